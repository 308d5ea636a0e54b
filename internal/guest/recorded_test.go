package guest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
)

// recordedDir holds the replies the harness records from the real stack.
const recordedDir = "../testdata/recorded"

// recordedMAC is the NIC of the recorded guest (domiflist.txt).
const recordedMAC = "52:54:00:b4:f7:07"

// recordedAgent replays the replies the harness recorded from a real
// Debian 12 guest (qemu-ga 7.2, 4 vCPUs, <driver queues='4'/>) in
// internal/testdata/recorded. Programs that were not recorded (readlink) fail
// as missing. after maps an ethtool argv to a synthesized out-data, for
// states the recording does not hold.
func recordedAgent(t *testing.T, after map[string]string) guest.Agent {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(recordedDir, name))
		if err != nil {
			t.Skipf("recorded reply missing: %v", err)
		}
		return b
	}
	// Read everything up front: Skip must not run inside the agent.
	files := map[string][]byte{}
	for _, n := range []string{
		"guest-info.json", "guest-get-osinfo.json", "guest-network-get-interfaces.json",
		"guest-exec.ethtool-l.json", "guest-exec-status.ethtool-l.json",
		"guest-exec.ethtool-L-combined-2.json", "guest-exec-status.ethtool-L-combined-2.json",
		"guest-exec-status.ethtool-L-combined-5.json",
		"guest-exec.cat-proc-interrupts.json", "guest-exec-status.cat-proc-interrupts.json",
	} {
		files[n] = read(n)
	}
	var mu sync.Mutex
	status := map[int64][]byte{} // pid → guest-exec-status reply
	next := int64(10000)
	ls := 0
	return guesttest.NewAgent(func(_ context.Context, c guesttest.Command) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		switch c.Execute {
		case "guest-info", "guest-get-osinfo", "guest-network-get-interfaces":
			return files[c.Execute+".json"], nil
		case "guest-exec":
			var a struct {
				Path string   `json:"path"`
				Arg  []string `json:"arg"`
			}
			if err := json.Unmarshal(c.Arguments, &a); err != nil {
				return nil, err
			}
			argv := strings.Join(a.Arg, " ")
			var name string
			switch {
			case strings.HasSuffix(a.Path, "/ethtool") && strings.HasPrefix(argv, "-l "):
				name = "ethtool-l"
				ls++
				if s, ok := after[argv]; ok && ls > 1 {
					next++
					status[next] = guesttest.Return(map[string]any{"exited": true, "exitcode": 0, "out-data": base64.StdEncoding.EncodeToString([]byte(s))})
					return guesttest.Return(map[string]int64{"pid": next}), nil
				}
			case strings.HasSuffix(a.Path, "/ethtool") && strings.HasPrefix(argv, "-L ") && strings.HasSuffix(argv, " combined 2"):
				name = "ethtool-L-combined-2"
			case strings.HasSuffix(a.Path, "/ethtool") && strings.HasPrefix(argv, "-L ") && strings.HasSuffix(argv, " combined 5"):
				next++
				status[next] = files["guest-exec-status.ethtool-L-combined-5.json"]
				return guesttest.Return(map[string]int64{"pid": next}), nil
			case argv == "/proc/interrupts" && strings.HasSuffix(a.Path, "/cat"):
				name = "cat-proc-interrupts"
			default:
				return nil, fmt.Errorf("internal error: unable to execute QEMU agent command 'guest-exec': Failed to execute child process “%s” (No such file or directory)", a.Path)
			}
			reply := files["guest-exec."+name+".json"]
			var started struct {
				Return struct {
					PID int64 `json:"pid"`
				} `json:"return"`
			}
			if err := json.Unmarshal(reply, &started); err != nil {
				return nil, err
			}
			status[started.Return.PID] = files["guest-exec-status."+name+".json"]
			return reply, nil
		case "guest-exec-status":
			var a struct {
				PID int64 `json:"pid"`
			}
			if err := json.Unmarshal(c.Arguments, &a); err != nil {
				return nil, err
			}
			r, ok := status[a.PID]
			if !ok {
				return nil, errors.New("internal error: unable to execute QEMU agent command 'guest-exec-status': Invalid parameter 'pid'")
			}
			delete(status, a.PID)
			return r, nil
		}
		return nil, fmt.Errorf("command %s was not recorded", c.Execute)
	})
}

func TestRecordedConfigure(t *testing.T) {
	a := recordedAgent(t, map[string]string{"-l eth0": guesttest.ChannelsOutput("eth0", guest.Channels{Max: 4, Current: 2})})
	got, err := guest.Configure(context.Background(), a, recordedMAC, 2, fast)
	want := guest.Result{IfName: "eth0", OS: "debian", Before: guest.Channels{Max: 4, Current: 4}, After: guest.Channels{Max: 4, Current: 2}, Changed: true}
	if err != nil || !equalResult(got, want) {
		t.Fatalf("Configure(2) = %+v, %v; want %+v", got, err, want)
	}

	got, err = guest.Configure(context.Background(), recordedAgent(t, nil), recordedMAC, 4, fast)
	want = guest.Result{IfName: "eth0", OS: "debian", Before: guest.Channels{Max: 4, Current: 4}, After: guest.Channels{Max: 4, Current: 4}}
	if err != nil || !equalResult(got, want) {
		t.Fatalf("Configure(4) = %+v, %v; want %+v", got, err, want)
	}

	if _, err := guest.Configure(context.Background(), recordedAgent(t, nil), recordedMAC, 5, fast); !errors.Is(err, guest.ErrAboveMax) {
		t.Fatalf("Configure(5) = %v, want ErrAboveMax", err)
	}

	if _, err := guest.Configure(context.Background(), recordedAgent(t, nil), "52:54:00:00:00:01", 2, fast); !errors.Is(err, guest.ErrNoInterface) {
		t.Fatalf("Configure(other MAC) = %v, want ErrNoInterface", err)
	}
}

func TestRecordedInspect(t *testing.T) {
	got, err := guest.Inspect(context.Background(), recordedAgent(t, nil), recordedMAC, fast)
	if err != nil {
		t.Fatalf("Inspect() error: %v", err)
	}
	if got.IfName != "eth0" || got.Before != (guest.Channels{Max: 4, Current: 4}) {
		t.Errorf("Inspect() = %+v", got)
	}
	// readlink was not recorded: every virtio queue line is reported, and
	// virtio1 (the virtio-serial of the agent channel) has none.
	if !slices.Equal(got.Interrupts, virtio0IRQs) {
		t.Errorf("Interrupts:\n got %q\nwant %q", got.Interrupts, virtio0IRQs)
	}
}
