package virt

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt/socket"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrHostKey is returned (wrapped) when an ssh server's host key is not
// trusted: the host is not in known_hosts, or its key differs from the one
// recorded there. virtmq never accepts an unknown key.
var ErrHostKey = errors.New("ssh host key not trusted")

// defaultKeyFiles are tried, in ~/.ssh, besides the agent's keys.
var defaultKeyFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// dialSSH logs in to u's host with the agent's keys and the user's key
// files, checking the host key against known_hosts, and connects to the
// first remote daemon socket that answers through the ssh connection.
func dialSSH(ctx context.Context, u URI, opts DialOptions) (Conn, string, error) {
	fail := func(err error) (Conn, string, error) {
		return nil, "", fmt.Errorf("failed to connect to libvirt through ssh: %w", err)
	}
	cfg, err := sshConfig(u, opts)
	if err != nil {
		return fail(err)
	}
	timeout := DefaultDialTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	client, err := sshLogin(ctx, u.Addr(), cfg, timeout)
	if err != nil {
		return fail(err)
	}
	var errs []error
	for _, p := range opts.sockets(u.Socket) {
		nc, err := client.Dial("unix", p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		d := &sshDialer{addr: u.Addr(), cfg: cfg, path: p, first: &sshConn{Conn: nc, client: client}}
		c, err := dialOne(ctx, func(t time.Duration) socket.Dialer { d.timeout = t; return d })
		if err != nil {
			return fail(fmt.Errorf("%s: %w", p, err))
		}
		return c, fmt.Sprintf("%s@%s:%s", cfg.User, u.Addr(), p), nil
	}
	client.Close()
	return fail(fmt.Errorf("no libvirt socket on the remote host: %w", errors.Join(errs...)))
}

// sshConfig builds the client configuration: the login, the agent's keys
// and the key files, and the known_hosts check.
func sshConfig(u URI, opts DialOptions) (*ssh.ClientConfig, error) {
	login := u.User
	if login == "" {
		login = opts.getenv("USER")
	}
	if login == "" {
		if cu, err := user.Current(); err == nil {
			login = cu.Username
		}
	}
	home := opts.home()
	hostKey, algos, err := knownHostsCheck(u, opts, home)
	if err != nil {
		return nil, err
	}
	signers, notes := sshSigners(u, opts, home)
	if len(signers) == 0 {
		return nil, fmt.Errorf("no ssh key to log in to %s with: %s (virtmq does not ask for passwords)",
			u.Addr(), strings.Join(notes, "; "))
	}
	return &ssh.ClientConfig{
		User:              login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   hostKey,
		HostKeyAlgorithms: algos,
	}, nil
}

// sshSigners returns the ssh-agent's keys ($SSH_AUTH_SOCK) and those of
// the key files (keyfile=, else ~/.ssh/id_*), and notes on what was not
// usable. Passphrase-protected key files are skipped: load them into the
// agent.
func sshSigners(u URI, opts DialOptions, home string) ([]ssh.Signer, []string) {
	var signers []ssh.Signer
	var notes []string
	if sock := opts.getenv("SSH_AUTH_SOCK"); sock != "" {
		// The agent signs during the handshake: the connection stays
		// open for the process's life (one per dial, closed on exit).
		ac, err := net.Dial("unix", sock)
		if err != nil {
			notes = append(notes, fmt.Sprintf("ssh-agent at %s: %v", sock, err))
		} else if s, err := agent.NewClient(ac).Signers(); err != nil {
			notes = append(notes, fmt.Sprintf("ssh-agent at %s: %v", sock, err))
			ac.Close()
		} else {
			if len(s) == 0 {
				notes = append(notes, "ssh-agent has no keys")
			}
			signers = append(signers, s...)
		}
	} else {
		notes = append(notes, "no ssh-agent (SSH_AUTH_SOCK is not set)")
	}
	files := []string{u.KeyFile}
	if u.KeyFile == "" {
		files = files[:0]
		for _, f := range defaultKeyFiles {
			files = append(files, filepath.Join(home, ".ssh", f))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if u.KeyFile != "" || !errors.Is(err, os.ErrNotExist) {
				notes = append(notes, err.Error())
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(b)
		var pm *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pm):
			notes = append(notes, f+": has a passphrase (add it to the ssh-agent)")
		case err != nil:
			notes = append(notes, fmt.Sprintf("%s: %v", f, err))
		default:
			signers = append(signers, s)
		}
	}
	if u.KeyFile == "" && len(signers) == 0 {
		notes = append(notes, "no key in "+filepath.Join(home, ".ssh")+" ("+strings.Join(defaultKeyFiles, ", ")+")")
	}
	return signers, notes
}

// knownHostsCheck returns the host key callback of the known_hosts files
// (known_hosts=, else ~/.ssh/known_hosts, and the global file) and the host
// key algorithms recorded there for the host, so that the server offers a
// key the files can vouch for. A host with no key in them is refused here,
// before connecting.
func knownHostsCheck(u URI, opts DialOptions, home string) (ssh.HostKeyCallback, []string, error) {
	files := []string{u.KnownHosts}
	if u.KnownHosts == "" {
		global := opts.GlobalKnownHosts
		if global == "" {
			global = "/etc/ssh/ssh_known_hosts"
		}
		files = []string{filepath.Join(home, ".ssh", "known_hosts"), global}
	}
	var exist []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			exist = append(exist, f)
		} else if u.KnownHosts != "" {
			return nil, nil, fmt.Errorf("%w: known_hosts=%s: %w", ErrHostKey, u.KnownHosts, err)
		}
	}
	addHint := fmt.Sprintf("check the host's key fingerprint, then add it: ssh-keyscan -p %s %s >> %s",
		portOf(u.Addr()), u.Host, files[0])
	if len(exist) == 0 {
		return nil, nil, fmt.Errorf("%w: %s: no known_hosts file (%s); %s", ErrHostKey, u.Addr(), strings.Join(files, ", "), addHint)
	}
	cb, err := knownhosts.New(exist...)
	if err != nil {
		return nil, nil, fmt.Errorf("read known_hosts: %w", err)
	}
	algos, err := knownAlgorithms(cb, u.Addr())
	if err != nil {
		return nil, nil, err
	}
	if len(algos) == 0 {
		return nil, nil, fmt.Errorf("%w: %s is not in %s; %s", ErrHostKey, knownhosts.Normalize(u.Addr()), strings.Join(exist, ", "), addHint)
	}
	check := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) > 0:
			w := ke.Want[0]
			return fmt.Errorf("%w: %s offered %s key %s, but %s:%d has another: the host key changed "+
				"or someone is in the middle; refused (fix known_hosts once you know why)",
				ErrHostKey, knownhosts.Normalize(hostname), key.Type(), ssh.FingerprintSHA256(key), w.Filename, w.Line)
		case errors.As(err, &re):
			return fmt.Errorf("%w: %s offered a revoked key (%s:%d)", ErrHostKey, knownhosts.Normalize(hostname), re.Revoked.Filename, re.Revoked.Line)
		case errors.As(err, &ke):
			return fmt.Errorf("%w: %s (%s key %s) is not in %s; %s", ErrHostKey, knownhosts.Normalize(hostname),
				key.Type(), ssh.FingerprintSHA256(key), strings.Join(exist, ", "), addHint)
		}
		return fmt.Errorf("%w: %w", ErrHostKey, err)
	}
	return check, algos, nil
}

// probeKey is a key no known_hosts line holds: checking it yields the keys
// recorded for a host.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	k, _ := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	return k
})

// knownAlgorithms returns the host key algorithms known_hosts records for
// addr, none when it records no key.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) ([]string, error) {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		tcp = &net.TCPAddr{}
	}
	err = cb(addr, tcp, probeKey())
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		if err == nil {
			return nil, errors.New("known_hosts accepts a probe key: refusing to trust it")
		}
		return nil, fmt.Errorf("%w: %w", ErrHostKey, err)
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		t := k.Key.Type()
		var as []string
		switch t {
		case ssh.KeyAlgoRSA:
			as = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		default:
			as = []string{t}
		}
		for _, a := range as {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos, nil
}

// sshLogin connects and authenticates, within timeout and ctx.
func sshLogin(ctx context.Context, addr string, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(tctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	stop := context.AfterFunc(tctx, func() { nc.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if !stop() {
		if err == nil {
			cc.Close()
		}
		nc.Close()
		return nil, fmt.Errorf("ssh %s: %w", addr, tctx.Err())
	}
	if err != nil {
		nc.Close()
		if errors.Is(err, ErrHostKey) {
			return nil, err
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("ssh %s: login as %s refused: %w (offer a key the server accepts: ssh-agent, or keyfile=)", addr, cfg.User, err)
		}
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

// sshDialer gives go-libvirt the connection dialSSH opened, and a new ssh
// login and socket connection when go-libvirt dials again.
type sshDialer struct {
	addr    string
	cfg     *ssh.ClientConfig
	path    string
	timeout time.Duration

	mu    sync.Mutex
	first *sshConn
}

var _ socket.Dialer = (*sshDialer)(nil)

// Dial returns the connection to the remote daemon's socket.
func (d *sshDialer) Dial() (net.Conn, error) {
	d.mu.Lock()
	c := d.first
	d.first = nil
	d.mu.Unlock()
	if c != nil {
		return c, nil
	}
	client, err := sshLogin(context.Background(), d.addr, d.cfg, d.timeout)
	if err != nil {
		return nil, err
	}
	nc, err := client.Dial("unix", d.path)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("%s: %w", d.path, err)
	}
	return &sshConn{Conn: nc, client: client}, nil
}

// sshConn is a connection through an ssh client that it owns: closing
// it logs out.
type sshConn struct {
	net.Conn
	client *ssh.Client
}

// Close closes the channel and the ssh connection.
func (c *sshConn) Close() error {
	err := c.Conn.Close()
	if cerr := c.client.Close(); err == nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}

// splitAddr splits host:port.
func splitAddr(addr string) (host, port string) {
	host, port, _ = net.SplitHostPort(addr)
	return host, port
}

// portOf is addr's port.
func portOf(addr string) string {
	_, p := splitAddr(addr)
	return p
}
