package guest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
)

const mac = "52:54:00:12:34:56"

// fast keeps polling tests quick; ExecTimeout stays generous so that only
// the timeout tests time out.
var fast = guest.Options{PollInterval: time.Millisecond, ExecTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second}

// debian is a Debian 12 guest with eth0 (4 queues max, cur current) and
// ethtool in /usr/sbin.
func debian(cur int) (*guesttest.Guest, *guesttest.Ethtool) {
	et := &guesttest.Ethtool{NICs: map[string]*guest.Channels{"eth0": {Max: 4, Current: cur}}}
	g := &guesttest.Guest{
		Interfaces: []guesttest.Interface{{Name: "lo", MAC: "00:00:00:00:00:00"}, {Name: "eth0", MAC: mac}},
		Programs:   map[string]guesttest.Program{"/usr/sbin/ethtool": et.Run},
		Polls:      1,
	}
	return g, et
}

func TestConfigure(t *testing.T) {
	tests := []struct {
		name     string
		cur      int
		want     int
		libvirt  bool
		wantRes  guest.Result
		wantExec []string
	}{
		{
			name: "4 to 2", cur: 4, want: 2,
			wantRes:  guest.Result{IfName: "eth0", OS: "debian", Before: guest.Channels{Max: 4, Current: 4}, After: guest.Channels{Max: 4, Current: 2}, Changed: true},
			wantExec: []string{"/usr/sbin/ethtool -l eth0", "/usr/sbin/ethtool -L eth0 combined 2", "/usr/sbin/ethtool -l eth0"},
		},
		{
			name: "1 to 4 through libvirt", cur: 1, want: 4, libvirt: true,
			wantRes:  guest.Result{IfName: "eth0", OS: "debian", Before: guest.Channels{Max: 4, Current: 1}, After: guest.Channels{Max: 4, Current: 4}, Changed: true},
			wantExec: []string{"/usr/sbin/ethtool -l eth0", "/usr/sbin/ethtool -L eth0 combined 4", "/usr/sbin/ethtool -l eth0"},
		},
		{
			name: "already at M", cur: 2, want: 2,
			wantRes:  guest.Result{IfName: "eth0", OS: "debian", Before: guest.Channels{Max: 4, Current: 2}, After: guest.Channels{Max: 4, Current: 2}},
			wantExec: []string{"/usr/sbin/ethtool -l eth0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, et := debian(tt.cur)
			g.Libvirt = tt.libvirt
			got, err := guest.Configure(context.Background(), g.Agent(), mac, tt.want, fast)
			if err != nil {
				t.Fatalf("Configure() error: %v", err)
			}
			if !equalResult(got, tt.wantRes) {
				t.Errorf("Configure() = %+v, want %+v", got, tt.wantRes)
			}
			if execs := g.Execs(); !slices.Equal(execs, tt.wantExec) {
				t.Errorf("guest-exec calls:\n got %q\nwant %q", execs, tt.wantExec)
			}
			if c := et.NICs["eth0"].Current; c != tt.want {
				t.Errorf("guest eth0 combined = %d, want %d", c, tt.want)
			}
		})
	}
}

func equalResult(a, b guest.Result) bool {
	return a.IfName == b.IfName && a.OS == b.OS && a.Before == b.Before && a.After == b.After &&
		a.Changed == b.Changed && slices.Equal(a.Interrupts, b.Interrupts)
}

// TestConfigureExecStatusOnce checks that no process is asked about again
// after it said exited: qemu-ga has forgotten it by then.
func TestConfigureExecStatusOnce(t *testing.T) {
	g, _ := debian(4)
	g.Polls = 3
	if _, err := guest.Configure(context.Background(), g.Agent(), mac, 1, fast); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, c := range g.Calls() {
		if strings.HasPrefix(c, "guest-exec-status ") {
			count[c]++
		}
	}
	if len(count) != 3 {
		t.Errorf("polled %d processes, want 3: %v", len(count), count)
	}
	for c, n := range count {
		if n != 4 {
			t.Errorf("%s sent %d times, want 4 (3 running + 1 exited)", c, n)
		}
	}
}

func TestConfigureReasons(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(g *guesttest.Guest, et *guesttest.Ethtool)
		want    int
		wantErr error
		// wantText must appear in the error message.
		wantText string
		// noExec: the guest must not have been asked to run anything.
		noExec bool
	}{
		{name: "exec disabled", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) {
			g.Disabled = []string{"guest-exec", "guest-exec-status"}
		}, wantErr: guest.ErrExecDisabled, noExec: true},
		{name: "exec-status absent", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) { g.Absent = []string{"guest-exec-status"} }, wantErr: guest.ErrExecDisabled, wantText: "guest-exec-status", noExec: true},
		{name: "interfaces disabled", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) { g.Disabled = []string{"guest-network-get-interfaces"} }, wantErr: guest.ErrCommandDisabled, noExec: true},
		{name: "windows", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) { g.OSInfo = guesttest.WindowsOSInfo() }, wantErr: guest.ErrNotLinux, wantText: "mswindows", noExec: true},
		{name: "kernel-name", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) {
			g.OSInfo = map[string]any{"kernel-name": "Windows_NT", "id": "something"}
		}, wantErr: guest.ErrNotLinux, noExec: true},
		{name: "freebsd", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) {
			g.OSInfo = map[string]any{"id": "freebsd", "name": "FreeBSD"}
		}, wantErr: guest.ErrNotLinux, noExec: true},
		{name: "above max", want: 5, wantErr: guest.ErrAboveMax, wantText: "maximum 4"},
		{name: "no interface", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) { g.Interfaces = g.Interfaces[:1] }, wantErr: guest.ErrNoInterface, noExec: true},
		{name: "no ethtool anywhere", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) { g.Programs = nil }, wantErr: guest.ErrNoEthtool, wantText: "/bin/ethtool"},
		{name: "no ethtool anywhere, libvirt errors", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) { g.Programs = nil; g.Libvirt = true }, wantErr: guest.ErrNoEthtool},
		{name: "unprivileged", setup: func(_ *guesttest.Guest, et *guesttest.Ethtool) { et.Unprivileged = true }, wantErr: guest.ErrDenied, wantText: "Operation not permitted"},
		{name: "hostile name", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) {
			g.Interfaces = []guesttest.Interface{{Name: "eth0;reboot", MAC: mac}}
		}, wantText: `"eth0;reboot"`, noExec: true},
		{name: "option-like name", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) {
			g.Interfaces = []guesttest.Interface{{Name: "--reset", MAC: mac}}
		}, wantText: `"--reset"`, noExec: true},
		{name: "long name", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) {
			g.Interfaces = []guesttest.Interface{{Name: strings.Repeat("e", 16), MAC: mac}}
		}, wantText: "longer than 15", noExec: true},
		{name: "not multiqueue", setup: func(_ *guesttest.Guest, et *guesttest.Ethtool) { et.NICs["eth0"] = &guest.Channels{} }, want: 1, wantText: "n/a"},
		{name: "ethtool fails", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) {
			g.Programs["/usr/sbin/ethtool"] = guesttest.Output(guesttest.Exit{Code: 1, Stderr: []byte("netlink error: Operation not supported\n")})
		}, wantText: `exit status 1: "netlink error: Operation not supported"`},
		{name: "ethtool killed", setup: func(g *guesttest.Guest, _ *guesttest.Ethtool) {
			g.Programs["/usr/sbin/ethtool"] = guesttest.Output(guesttest.Exit{Signal: 9})
		}, wantText: "killed by signal 9"},
		{name: "-L ignored", setup: func(g *guesttest.Guest, et *guesttest.Ethtool) {
			g.Programs["/usr/sbin/ethtool"] = func(args []string) guesttest.Exit {
				if args[0] == "-L" {
					return guesttest.Exit{}
				}
				return et.Run(args)
			}
		}, wantText: "succeeded but ethtool -l reads 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, et := debian(4)
			if tt.setup != nil {
				tt.setup(g, et)
			}
			want := tt.want
			if want == 0 {
				want = 2
			}
			_, err := guest.Configure(context.Background(), g.Agent(), mac, want, fast)
			if err == nil {
				t.Fatal("Configure() = nil error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Configure() = %v, want errors.Is %v", err, tt.wantErr)
			}
			if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Configure() = %v, want text %q", err, tt.wantText)
			}
			if execs := g.Execs(); tt.noExec && len(execs) > 0 {
				t.Errorf("guest-exec ran %q, want none", execs)
			}
			if et.Sets != 0 && tt.name != "-L ignored" {
				t.Errorf("ethtool -L ran %d times, want 0", et.Sets)
			}
		})
	}
}

func TestConfigureEthtoolPaths(t *testing.T) {
	for _, libvirt := range []bool{false, true} {
		t.Run(fmt.Sprintf("libvirt=%v", libvirt), func(t *testing.T) {
			g, _ := debian(4)
			g.Libvirt = libvirt
			g.Programs["/sbin/ethtool"] = g.Programs["/usr/sbin/ethtool"]
			delete(g.Programs, "/usr/sbin/ethtool")
			res, err := guest.Configure(context.Background(), g.Agent(), mac, 3, fast)
			if err != nil || res.After.Current != 3 {
				t.Fatalf("Configure() = %+v, %v", res, err)
			}
			want := []string{"/usr/sbin/ethtool -l eth0", "/sbin/ethtool -l eth0", "/sbin/ethtool -L eth0 combined 3", "/sbin/ethtool -l eth0"}
			if got := g.Execs(); !slices.Equal(got, want) {
				t.Errorf("guest-exec calls:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestConfigureExit127(t *testing.T) {
	g, et := debian(4)
	g.Programs["/usr/bin/ethtool"] = et.Run
	g.Programs["/usr/sbin/ethtool"] = guesttest.Output(guesttest.Exit{Code: 127, Stderr: []byte("not found\n")})
	opt := fast
	opt.EthtoolPaths = []string{"/usr/sbin/ethtool", "/usr/bin/ethtool"}
	if _, err := guest.Configure(context.Background(), g.Agent(), mac, 1, opt); err != nil {
		t.Fatal(err)
	}
	if et.Sets != 1 {
		t.Errorf("ethtool -L ran %d times, want 1", et.Sets)
	}
}

// TestConfigureSpawnErrors covers the ways guest-exec itself can fail.
func TestConfigureSpawnErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr error
	}{
		{"disabled while running (frozen filesystems)", &guest.CommandError{Command: "guest-exec", Class: "CommandNotFound", Desc: "Command guest-exec has been disabled: the command is not allowed"}, guest.ErrExecDisabled},
		{"disabled, libvirt wording", errors.New("internal error: unable to execute QEMU agent command 'guest-exec': Command guest-exec has been disabled: the command is not allowed"), guest.ErrExecDisabled},
		{"SELinux", errors.New("internal error: unable to execute QEMU agent command 'guest-exec': Failed to execute child process “/usr/sbin/ethtool” (Permission denied)"), guest.ErrDenied},
		{"agent gone", fmt.Errorf("libvirt: %w", guest.ErrNoAgent), guest.ErrNoAgent},
		{"localized spawn error", &guest.CommandError{Command: "guest-exec", Class: "GenericError", Desc: "Fehler beim Ausführen des Kindprozesses „/usr/sbin/ethtool“ (Datei oder Verzeichnis nicht gefunden)"}, guest.ErrNoEthtool},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := debian(4)
			inner := g.Agent()
			execs := 0
			a := guesttest.NewAgent(func(ctx context.Context, c guesttest.Command) ([]byte, error) {
				if c.Execute == "guest-exec" {
					execs++
					return nil, tt.err
				}
				return inner.Command(ctx, mustJSON(c), c.Timeout)
			})
			_, err := guest.Configure(context.Background(), a, mac, 2, fast)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Configure() = %v, want errors.Is %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "ethtool -l eth0") {
				t.Errorf("error %q does not name the step", err)
			}
			if errors.Is(tt.wantErr, guest.ErrNoAgent) && execs != 1 {
				t.Errorf("guest-exec tried %d times after the agent was gone, want 1", execs)
			}
		})
	}
}

// TestConfigureUnknownError: an error that is neither a CommandError nor
// recognisable stops at once instead of trying every path.
func TestConfigureUnknownError(t *testing.T) {
	g, _ := debian(4)
	inner := g.Agent()
	execs := 0
	a := guesttest.NewAgent(func(ctx context.Context, c guesttest.Command) ([]byte, error) {
		if c.Execute == "guest-exec" {
			execs++
			return nil, errors.New("internal error: client socket is closed")
		}
		return inner.Command(ctx, mustJSON(c), c.Timeout)
	})
	_, err := guest.Configure(context.Background(), a, mac, 2, fast)
	if err == nil || errors.Is(err, guest.ErrNoEthtool) || execs != 1 {
		t.Fatalf("Configure() = %v after %d guest-exec, want the transport error after 1", err, execs)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestConfigureOSInfo(t *testing.T) {
	t.Run("old agent without guest-get-osinfo", func(t *testing.T) {
		g, _ := debian(4)
		g.Absent = []string{"guest-get-osinfo"}
		res, err := guest.Configure(context.Background(), g.Agent(), mac, 2, fast)
		if err != nil || res.OS != "" || !res.Changed {
			t.Fatalf("Configure() = %+v, %v", res, err)
		}
		if slices.Contains(g.Calls(), "guest-get-osinfo") {
			t.Error("guest-get-osinfo sent although guest-info does not list it")
		}
	})
	t.Run("guest-get-osinfo fails", func(t *testing.T) {
		g, _ := debian(4)
		inner := g.Agent()
		a := guesttest.NewAgent(func(ctx context.Context, c guesttest.Command) ([]byte, error) {
			if c.Execute == "guest-get-osinfo" {
				return guesttest.ErrorReply("GenericError", "cannot read /etc/os-release"), nil
			}
			return inner.Command(ctx, mustJSON(c), c.Timeout)
		})
		res, err := guest.Configure(context.Background(), a, mac, 2, fast)
		if err != nil || res.OS != "" {
			t.Fatalf("Configure() = %+v, %v", res, err)
		}
	})
	t.Run("hostile id is not kept", func(t *testing.T) {
		g, _ := debian(4)
		g.OSInfo = map[string]any{"id": "debian\n{evil}", "name": "x"}
		res, err := guest.Configure(context.Background(), g.Agent(), mac, 2, fast)
		if err != nil || res.OS != "" {
			t.Fatalf("Configure() = %+v, %v", res, err)
		}
	})
}

// TestConfigurePollsQuickly: a program that has not exited at the first
// guest-exec-status poll is polled again well before PollInterval, the
// longest wait; that wait only applies to programs that keep running.
func TestConfigurePollsQuickly(t *testing.T) {
	g, _ := debian(1)
	g.Polls = 2 // exited:false twice: waits of 1/10 and 2/10 of PollInterval
	opt := fast
	opt.PollInterval = 400 * time.Millisecond
	start := time.Now()
	if _, err := guest.Configure(context.Background(), g.Agent(), mac, 4, opt); err != nil {
		t.Fatal(err)
	}
	// Three ethtool runs (-l, -L, -l): 3 × 120ms with the growing waits,
	// 3 × 800ms with waits of PollInterval.
	if d := time.Since(start); d >= 3*opt.PollInterval {
		t.Errorf("Configure() took %v: a program that exits at the third poll waited PollInterval (%v) between polls", d, opt.PollInterval)
	}
}

func TestConfigureTimeout(t *testing.T) {
	g, _ := debian(4)
	g.Programs["/usr/sbin/ethtool"] = guesttest.Output(guesttest.Exit{Hang: true})
	opt := fast
	opt.ExecTimeout = 50 * time.Millisecond
	opt.PollInterval = 5 * time.Millisecond
	start := time.Now()
	_, err := guest.Configure(context.Background(), g.Agent(), mac, 2, opt)
	if !errors.Is(err, guest.ErrTimeout) {
		t.Fatalf("Configure() = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Configure() took %v with ExecTimeout 50ms", d)
	}
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, guest.ErrTimeout) {
		t.Errorf("Configure() = %v: a guest timeout must not look like the caller's", err)
	}
}

func TestConfigureCancel(t *testing.T) {
	g, _ := debian(4)
	g.Programs["/usr/sbin/ethtool"] = guesttest.Output(guesttest.Exit{Hang: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := guest.Configure(ctx, g.Agent(), mac, 2, fast)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, guest.ErrTimeout) {
		t.Fatalf("Configure() = %v, want the caller's deadline, not ErrTimeout", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := guest.Configure(ctx, g.Agent(), mac, 2, fast); !errors.Is(err, context.Canceled) {
		t.Fatalf("Configure(cancelled) = %v", err)
	}
}

// TestConfigureCommandTimeout: each agent command gets CommandTimeout
// (less when the context ends sooner), and an agent that does not answer
// in time gives ErrTimeout.
func TestConfigureCommandTimeout(t *testing.T) {
	g, _ := debian(4)
	inner := g.Agent()
	var longest time.Duration
	a := guesttest.NewAgent(func(ctx context.Context, c guesttest.Command) ([]byte, error) {
		longest = max(longest, c.Timeout)
		if c.Execute == "guest-network-get-interfaces" {
			<-ctx.Done()
			return nil, fmt.Errorf("agent: %w", ctx.Err())
		}
		return inner.Command(ctx, mustJSON(c), c.Timeout)
	})
	opt := fast
	opt.CommandTimeout = 20 * time.Millisecond
	_, err := guest.Configure(context.Background(), a, mac, 2, opt)
	if !errors.Is(err, guest.ErrTimeout) || !strings.Contains(err.Error(), "guest-network-get-interfaces") {
		t.Fatalf("Configure() = %v, want ErrTimeout in guest-network-get-interfaces", err)
	}
	if longest > opt.CommandTimeout {
		t.Errorf("agent timeout %v > CommandTimeout %v", longest, opt.CommandTimeout)
	}
}

func TestConfigureHostileOutput(t *testing.T) {
	valid := guesttest.ChannelsOutput("eth0", guest.Channels{Max: 4, Current: 4})
	huge := bytes.Repeat([]byte("A"), 16<<20)
	tests := []struct {
		name     string
		exit     guesttest.Exit
		wantText string
	}{
		{"16 MiB of junk", guesttest.Exit{Stdout: huge, OutTruncated: true}, "truncated"},
		{"16 MiB after valid output", guesttest.Exit{Stdout: append([]byte(valid), huge...)}, ""},
		{"binary garbage", guesttest.Exit{Stdout: []byte("\x00\xff\xfe\x7fELF\x02\x01\x01\x00\x00\x00\x00Combined:\x00\x00")}, "no \"Pre-set maximums:\""},
		{"overflowing count", guesttest.Exit{Stdout: []byte(strings.Replace(valid, "Combined:\t4", "Combined:\t99999999999999999999", 1))}, "is not a count"},
		{"16 MiB stderr", guesttest.Exit{Code: 1, Stderr: huge}, "exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, et := debian(4)
			g.Programs["/usr/sbin/ethtool"] = func(args []string) guesttest.Exit {
				if args[0] == "-l" {
					return tt.exit
				}
				return et.Run(args)
			}
			// 4 is the current count: a successful parse runs no ethtool -L.
			res, err := guest.Configure(context.Background(), g.Agent(), mac, 4, fast)
			if tt.wantText == "" {
				if err != nil || res.Before != (guest.Channels{Max: 4, Current: 4}) {
					t.Fatalf("Configure() = %+v, %v", res, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("Configure() = %v, want error with %q", err, tt.wantText)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("error message is %d bytes long", len(err.Error()))
			}
			if et.Sets != 0 {
				t.Error("ethtool -L ran on unparsable output")
			}
		})
	}
}

func TestConfigureMalformedReplies(t *testing.T) {
	tests := []struct {
		name, cmd string
		reply     []byte
		wantText  string
	}{
		{"not JSON", "guest-info", []byte("<html>"), "guest-info: malformed reply"},
		{"no return", "guest-network-get-interfaces", []byte(`{"id":1}`), `no "return"`},
		{"wrong type", "guest-network-get-interfaces", []byte(`{"return":{"name":"eth0"}}`), "malformed reply"},
		{"no pid", "guest-exec", []byte(`{"return":{}}`), "no pid"},
		{"bad base64", "guest-exec-status", []byte(`{"return":{"exited":true,"exitcode":0,"out-data":"!!!"}}`), "not base64"},
		{"huge exit code", "guest-exec-status", []byte(`{"return":{"exited":true,"exitcode":99999999999999999999}}`), "malformed reply"},
		{"error reply", "guest-network-get-interfaces", guesttest.ErrorReply("GenericError", "getifaddrs failed"), "getifaddrs failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := debian(4)
			inner := g.Agent()
			a := guesttest.NewAgent(func(ctx context.Context, c guesttest.Command) ([]byte, error) {
				if c.Execute == tt.cmd {
					return tt.reply, nil
				}
				return inner.Command(ctx, mustJSON(c), c.Timeout)
			})
			_, err := guest.Configure(context.Background(), a, mac, 2, fast)
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("Configure() = %v, want error with %q", err, tt.wantText)
			}
		})
	}
}

func TestConfigureInterfaces(t *testing.T) {
	t.Run("MAC case", func(t *testing.T) {
		g, _ := debian(4)
		g.Interfaces[1].MAC = "52:54:00:AB:CD:EF"
		res, err := guest.Configure(context.Background(), g.Agent(), "52:54:00:ab:cd:ef", 2, fast)
		if err != nil || res.IfName != "eth0" {
			t.Fatalf("Configure() = %+v, %v", res, err)
		}
		res, err = guest.Configure(context.Background(), g.Agent(), "52-54-00-AB-CD-EF", 2, fast)
		if err != nil || res.IfName != "eth0" {
			t.Fatalf("Configure(dashes) = %+v, %v", res, err)
		}
	})
	t.Run("many interfaces", func(t *testing.T) {
		g, et := debian(4)
		var ifs []guesttest.Interface
		for i := range 5000 {
			ifs = append(ifs, guesttest.Interface{Name: fmt.Sprintf("veth%d", i), MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff)})
			ifs = append(ifs, guesttest.Interface{Name: fmt.Sprintf("bad;%d", i), MAC: "not a mac"})
		}
		g.Interfaces = append(ifs, guesttest.Interface{Name: "ens3", MAC: mac})
		et.NICs["ens3"] = et.NICs["eth0"]
		res, err := guest.Configure(context.Background(), g.Agent(), mac, 2, fast)
		if err != nil || res.IfName != "ens3" {
			t.Fatalf("Configure() = %+v, %v", res, err)
		}
	})
	t.Run("bad MAC argument", func(t *testing.T) {
		g, _ := debian(4)
		if _, err := guest.Configure(context.Background(), g.Agent(), "nope", 2, fast); err == nil {
			t.Fatal("Configure(bad MAC) = nil error")
		}
		if _, err := guest.Configure(context.Background(), g.Agent(), mac, 0, fast); err == nil {
			t.Fatal("Configure(combined 0) = nil error")
		}
		if len(g.Calls()) != 0 {
			t.Errorf("agent called for bad arguments: %q", g.Calls())
		}
	})
	t.Run("shared MAC", func(t *testing.T) {
		g, _ := debian(4)
		g.Interfaces = []guesttest.Interface{
			{Name: "lo", MAC: "00:00:00:00:00:00"},
			{Name: "br0", MAC: mac}, {Name: "eth0", MAC: mac}, {Name: "eth0.100", MAC: mac},
			{Name: "eth0:1", MAC: mac}, {Name: "evil;x", MAC: mac},
		}
		g.Programs["/bin/busybox"] = guesttest.Busybox(map[string]guesttest.Program{
			"readlink": guesttest.Links(map[string]string{"/sys/class/net/eth0/device": "../../../virtio0"}),
		})
		res, err := guest.Configure(context.Background(), g.Agent(), mac, 2, fast)
		if err != nil || res.IfName != "eth0" {
			t.Fatalf("Configure() = %+v, %v", res, err)
		}
	})
	t.Run("shared MAC, cannot tell", func(t *testing.T) {
		g, _ := debian(4)
		g.Interfaces = []guesttest.Interface{{Name: "br0", MAC: mac}, {Name: "eth0", MAC: mac}}
		_, err := guest.Configure(context.Background(), g.Agent(), mac, 2, fast)
		if err == nil || !strings.Contains(err.Error(), "cannot tell") {
			t.Fatalf("Configure() = %v, want an ambiguity error", err)
		}
	})
}

// interruptsFixture is the Debian fixture plus a second virtio NIC's lines.
func interruptsFixture(t *testing.T) []byte {
	b, err := os.ReadFile("testdata/proc-interrupts-debian12.txt")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, " 60:  0  0  0  0   PCI-MSI 81921-edge      virtio3-input.0\n 61:  0  0  0  0   PCI-MSI 81922-edge      virtio3-output.0\n"...)
}

var virtio0IRQs = []string{
	"virtio0-input.0", "virtio0-output.0", "virtio0-input.1", "virtio0-output.1",
	"virtio0-input.2", "virtio0-output.2", "virtio0-input.3", "virtio0-output.3",
}

func TestInspect(t *testing.T) {
	procIRQ := interruptsFixture(t)
	links := guesttest.Links(map[string]string{"/sys/class/net/eth0/device": "../../../virtio0"})
	cat := guesttest.Files(map[string][]byte{"/proc/interrupts": procIRQ})
	tests := []struct {
		name     string
		programs map[string]guesttest.Program
		want     []string
		wantErr  error
	}{
		{name: "coreutils", programs: map[string]guesttest.Program{"/usr/bin/readlink": links, "/bin/cat": cat}, want: virtio0IRQs},
		{name: "busybox", programs: map[string]guesttest.Program{"/bin/busybox": guesttest.Busybox(map[string]guesttest.Program{"readlink": links, "cat": cat})}, want: virtio0IRQs},
		{name: "no readlink: every virtio NIC", programs: map[string]guesttest.Program{"/bin/cat": cat}, want: append(slices.Clone(virtio0IRQs), "virtio3-input.0", "virtio3-output.0")},
		{name: "no ethtool", programs: map[string]guesttest.Program{"/usr/sbin/ethtool": nil, "/bin/readlink": links, "/usr/bin/cat": cat}, want: virtio0IRQs, wantErr: guest.ErrNoEthtool},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := debian(3)
			for p, prog := range tt.programs {
				if prog == nil {
					delete(g.Programs, p)
					continue
				}
				g.Programs[p] = prog
			}
			res, err := guest.Inspect(context.Background(), g.Agent(), mac, fast)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Inspect() error = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(res.Interrupts, tt.want) {
				t.Errorf("Interrupts:\n got %q\nwant %q", res.Interrupts, tt.want)
			}
			if tt.wantErr == nil && (res.IfName != "eth0" || res.Before != (guest.Channels{Max: 4, Current: 3}) || res.After != res.Before || res.Changed) {
				t.Errorf("Inspect() = %+v", res)
			}
		})
	}
}

// TestInspectLongInterrupts: with many vCPUs /proc/interrupts is much
// longer than MaxOutput and the NIC's lines come last.
func TestInspectLongInterrupts(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("      " + strings.Repeat("     CPUxxx", 256) + "\n")
	for i := range 400 {
		fmt.Fprintf(&b, "%4d:%s   PCI-MSI %d-edge      xhci_hcd\n", i, strings.Repeat("          0", 256), i)
	}
	b.WriteString(" 999:" + strings.Repeat("          0", 256) + "   PCI-MSI 1-edge      virtio0-input.0\n")
	g, _ := debian(4)
	g.Programs["/bin/cat"] = guesttest.Files(map[string][]byte{"/proc/interrupts": b.Bytes()})
	res, err := guest.Inspect(context.Background(), g.Agent(), mac, fast)
	if err != nil || !slices.Equal(res.Interrupts, []string{"virtio0-input.0"}) {
		t.Fatalf("Inspect() = %q, %v (input %d bytes)", res.Interrupts, err, b.Len())
	}
}

func TestInspectNoCat(t *testing.T) {
	g, _ := debian(4)
	res, err := guest.Inspect(context.Background(), g.Agent(), mac, fast)
	if err == nil || !strings.Contains(err.Error(), "/proc/interrupts") || res.Before.Max != 4 {
		t.Fatalf("Inspect() = %+v, %v; want channels and an error about /proc/interrupts", res, err)
	}
}

// replayAgent answers from fixture files: testdata/<execute>.json, or the
// file the map names.
func replayAgent(t *testing.T, files map[string]string) guest.Agent {
	return guesttest.NewAgent(func(_ context.Context, c guesttest.Command) ([]byte, error) {
		name, ok := files[c.Execute]
		if !ok {
			t.Errorf("unexpected command %s", c.Execute)
			return nil, errors.New("not recorded")
		}
		return os.ReadFile("testdata/" + name)
	})
}

func TestReplayFixtures(t *testing.T) {
	files := map[string]string{
		"guest-info":                   "guest-info-debian12.json",
		"guest-get-osinfo":             "guest-get-osinfo-debian12.json",
		"guest-network-get-interfaces": "guest-network-get-interfaces-debian12.json",
		"guest-exec":                   "guest-exec.json",
		"guest-exec-status":            "guest-exec-status-ethtool-l.json",
	}
	res, err := guest.Configure(context.Background(), replayAgent(t, files), mac, 4, fast)
	want := guest.Result{IfName: "eth0", OS: "debian", Before: guest.Channels{Max: 4, Current: 4}, After: guest.Channels{Max: 4, Current: 4}}
	if err != nil || !equalResult(res, want) {
		t.Fatalf("Configure() = %+v, %v; want %+v", res, err, want)
	}
	_, err = guest.Configure(context.Background(), replayAgent(t, files), mac, 8, fast)
	if !errors.Is(err, guest.ErrAboveMax) {
		t.Fatalf("Configure(8) = %v, want ErrAboveMax", err)
	}

	files["guest-info"] = "guest-info-rhel-noexec.json"
	if _, err := guest.Configure(context.Background(), replayAgent(t, files), mac, 4, fast); !errors.Is(err, guest.ErrExecDisabled) {
		t.Fatalf("Configure(RHEL) = %v, want ErrExecDisabled", err)
	}
	files["guest-info"] = "guest-info-debian12.json"
	files["guest-get-osinfo"] = "guest-get-osinfo-win2019.json"
	if _, err := guest.Configure(context.Background(), replayAgent(t, files), mac, 4, fast); !errors.Is(err, guest.ErrNotLinux) {
		t.Fatalf("Configure(Windows) = %v, want ErrNotLinux", err)
	}
}

// A guest listing the NIC's MAC on thousands of interfaces (or more than
// a handful) costs the discovery commands and nothing more: no readlink
// per interface.
func TestConfigureDiscoveryBounded(t *testing.T) {
	for _, n := range []int{9, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			g, _ := debian(4)
			g.Interfaces = []guesttest.Interface{{Name: "lo"}}
			for i := range n {
				g.Interfaces = append(g.Interfaces, guesttest.Interface{Name: fmt.Sprintf("veth%d", i), MAC: mac})
			}
			g.Programs["/usr/bin/readlink"] = guesttest.Links(nil)
			_, err := guest.Configure(context.Background(), g.Agent(), mac, 2, fast)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d interfaces have MAC", n)) {
				t.Errorf("Configure() = %v, want a too-many-interfaces error", err)
			}
			if calls := g.Calls(); len(calls) != 3 {
				t.Errorf("%d commands sent, want 3 (discovery only): %q", len(calls), calls[3:min(len(calls), 10)])
			}
		})
	}
	t.Run("8 candidates are told apart", func(t *testing.T) {
		g, _ := debian(4)
		g.Interfaces = []guesttest.Interface{{Name: "lo"}}
		for i := range 7 {
			g.Interfaces = append(g.Interfaces, guesttest.Interface{Name: fmt.Sprintf("veth%d", i), MAC: mac})
		}
		g.Interfaces = append(g.Interfaces, guesttest.Interface{Name: "eth0", MAC: mac})
		g.Programs["/usr/bin/readlink"] = guesttest.Links(map[string]string{"/sys/class/net/eth0/device": "../../../virtio0"})
		res, err := guest.Configure(context.Background(), g.Agent(), mac, 2, fast)
		if err != nil || res.IfName != "eth0" {
			t.Fatalf("Configure() = %+v, %v", res, err)
		}
	})
	t.Run("reply size", func(t *testing.T) {
		g, _ := debian(4)
		for i := range 40000 {
			g.Interfaces = append(g.Interfaces, guesttest.Interface{Name: fmt.Sprintf("veth%d", i), MAC: "02:00:00:00:00:01"})
		}
		_, err := guest.Configure(context.Background(), g.Agent(), mac, 2, fast)
		if err == nil || !strings.Contains(err.Error(), "more than the 8388608 kept") {
			t.Errorf("Configure() = %v, want a reply size error", err)
		}
		if calls := g.Calls(); len(calls) != 3 {
			t.Errorf("%d commands sent, want 3", len(calls))
		}
	})
}
