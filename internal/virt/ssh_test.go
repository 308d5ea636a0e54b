package virt

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testSSHServer is an in-process sshd on 127.0.0.1 that accepts one
// client key and forwards direct-streamlocal channels (ssh -W /path) to
// this host's unix sockets, as OpenSSH does.
type testSSHServer struct {
	addr    string
	hostKey ssh.PublicKey
	mu      sync.Mutex
	// streams are the unix socket paths clients asked for.
	streams []string
}

func newKey(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

func startSSHServer(t *testing.T, clientKey ssh.PublicKey) *testSSHServer {
	t.Helper()
	host, _ := newKey(t)
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) == string(clientKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(host)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testSSHServer{addr: l.Addr().String(), hostKey: host.PublicKey()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(nc, cfg)
			}()
		}
	}()
	return s
}

func (s *testSSHServer) serve(nc net.Conn, cfg *ssh.ServerConfig) {
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "direct-streamlocal@openssh.com" {
			nch.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		var req struct {
			Path      string
			Reserved0 string
			Reserved1 uint32
		}
		if err := ssh.Unmarshal(nch.ExtraData(), &req); err != nil {
			nch.Reject(ssh.Prohibited, err.Error())
			continue
		}
		s.mu.Lock()
		s.streams = append(s.streams, req.Path)
		s.mu.Unlock()
		uc, err := net.Dial("unix", req.Path)
		if err != nil {
			nch.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			uc.Close()
			continue
		}
		go ssh.DiscardRequests(creqs)
		go func() { io.Copy(ch, uc); ch.CloseWrite() }()
		go func() { io.Copy(uc, ch); uc.Close() }()
	}
}

// echoSocket serves a unix socket that echoes what it reads.
func echoSocket(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "echo.sock")
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return p
}

// sshHome writes HOME/.ssh with known_hosts lines and, when key is not
// nil, id_ed25519; it returns HOME.
func sshHome(t *testing.T, key ed25519.PrivateKey, known ...string) string {
	t.Helper()
	home := t.TempDir()
	dir := filepath.Join(home, ".ssh")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if known != nil {
		if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(strings.Join(known, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if key != nil {
		b, err := ssh.MarshalPrivateKey(key, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

func sshURI(t *testing.T, addr string) URI {
	t.Helper()
	u, err := ParseURI("qemu+ssh://root@" + addr + "/system")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func envOf(vars map[string]string) DialOptions {
	return DialOptions{Getenv: func(k string) string { return vars[k] }, GlobalKnownHosts: "/nonexistent/ssh_known_hosts"}
}

// login runs the ssh part of dialSSH and talks to the echo socket.
func login(t *testing.T, u URI, opts DialOptions, sock string) error {
	t.Helper()
	cfg, err := sshConfig(u, opts)
	if err != nil {
		return err
	}
	client, err := sshLogin(context.Background(), u.Addr(), cfg, 5*time.Second)
	if err != nil {
		return err
	}
	defer client.Close()
	c, err := client.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo = %q, %v", buf, err)
	}
	return nil
}

func TestSSHKeyFileLogin(t *testing.T) {
	client, priv := newKey(t)
	srv := startSSHServer(t, client.PublicKey())
	home := sshHome(t, priv, knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey))
	if err := login(t, sshURI(t, srv.addr), envOf(map[string]string{"HOME": home}), echoSocket(t)); err != nil {
		t.Fatal(err)
	}
}

func TestSSHAgentLogin(t *testing.T) {
	_, priv := newKey(t)
	pub, _ := ssh.NewPublicKey(priv.Public())
	srv := startSSHServer(t, pub)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	agentSock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", agentSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	// No key file: only the agent has the key.
	home := sshHome(t, nil, knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey))
	opts := envOf(map[string]string{"HOME": home, "SSH_AUTH_SOCK": agentSock})
	if err := login(t, sshURI(t, srv.addr), opts, echoSocket(t)); err != nil {
		t.Fatal(err)
	}
}

func TestSSHRefusals(t *testing.T) {
	client, priv := newKey(t)
	srv := startSSHServer(t, client.PublicKey())
	other, otherPriv := newKey(t)
	norm := knownhosts.Normalize(srv.addr)
	for _, tt := range []struct {
		name    string
		home    string
		hostKey bool // wants ErrHostKey
		want    string
	}{
		{"no known_hosts file", sshHome(t, priv), true, "no known_hosts file"},
		{"host not in known_hosts", sshHome(t, priv, knownhosts.Line([]string{"[127.0.0.1]:1"}, srv.hostKey)), true, "is not in"},
		{"host key changed", sshHome(t, priv, knownhosts.Line([]string{norm}, other.PublicKey())), true, "the host key changed"},
		{"revoked", sshHome(t, priv, "@revoked * "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.hostKey))),
			knownhosts.Line([]string{norm}, srv.hostKey)), true, "revoked"},
		{"key not accepted", sshHome(t, otherPriv, knownhosts.Line([]string{norm}, srv.hostKey)), false, "login as root refused"},
		{"no key at all", sshHome(t, nil, knownhosts.Line([]string{norm}, srv.hostKey)), false, "no ssh key to log in"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := login(t, sshURI(t, srv.addr), envOf(map[string]string{"HOME": tt.home}), echoSocket(t))
			if err == nil {
				t.Fatal("login succeeded")
			}
			if errors.Is(err, ErrHostKey) != tt.hostKey {
				t.Errorf("errors.Is(ErrHostKey) = %v: %v", !tt.hostKey, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.streams) != 0 {
		t.Errorf("refused logins reached sockets %q", srv.streams)
	}
}

// TestDialSSHProbesSockets: with no socket= the remote sockets are tried
// in order; none answering is an error naming each, and the URI.
func TestDialSSHProbesSockets(t *testing.T) {
	client, priv := newKey(t)
	srv := startSSHServer(t, client.PublicKey())
	home := sshHome(t, priv, knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey))
	opts := envOf(map[string]string{"HOME": home})
	opts.Sockets = []string{"/nonexistent/virtqemud-sock", "/nonexistent/libvirt-sock"}
	u := sshURI(t, srv.addr)
	_, _, err := DialURI(context.Background(), u, opts)
	if err == nil {
		t.Fatal("DialURI succeeded")
	}
	for _, w := range []string{"no libvirt socket on the remote host", "/nonexistent/virtqemud-sock", "/nonexistent/libvirt-sock"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %v, want it to say %q", err, w)
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if strings.Join(srv.streams, ",") != strings.Join(opts.Sockets, ",") {
		t.Errorf("streams = %q", srv.streams)
	}
}
