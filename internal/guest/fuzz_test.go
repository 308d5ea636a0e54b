package guest_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
)

// fuzzCommands are the agent commands Configure sends, in order.
var fuzzCommands = []string{"guest-info", "guest-get-osinfo", "guest-network-get-interfaces", "guest-exec", "guest-exec-status"}

// argvIfName is what an interface name in an ethtool argv must look like.
var argvIfName = regexp.MustCompile(`^[A-Za-z0-9_.:@][A-Za-z0-9_.:@-]{0,14}$`)

// FuzzConfigureReplies runs the guest step against a Debian guest whose
// reply to one command (the nth of its kind) is replaced by arbitrary
// bytes: whatever the guest says, Configure must not panic, must only run
// ethtool with a valid interface name, must keep guest text out of its
// errors beyond a bounded snippet, and may only report success when the
// guest said its count is the wanted one.
func FuzzConfigureReplies(f *testing.F) {
	for i, name := range []string{"guest-info-debian12.json", "guest-get-osinfo-debian12.json", "guest-network-get-interfaces-debian12.json", "guest-exec.json", "guest-exec-status-ethtool-l.json"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), uint8(0), b)
	}
	f.Add(uint8(2), uint8(0), []byte(`{"return":[{"name":"eth0;reboot","hardware-address":"52:54:00:12:34:56"},{"name":"-x","hardware-address":"52:54:00:12:34:56"}]}`))
	f.Add(uint8(4), uint8(1), []byte(`{"return":{"exited":true,"exitcode":0,"out-data":"Q29tYmluZWQ6CTk5OTk5OTk5OTk5OQo="}}`))
	f.Add(uint8(4), uint8(2), []byte(`{"return":{"exited":false}}`))
	f.Add(uint8(0), uint8(0), []byte(`{"error":{"class":"CommandNotFound","desc":"`+strings.Repeat("x", 5000)+`"}}`))
	f.Add(uint8(3), uint8(1), []byte(`{"return":{"pid":-1}}`))
	f.Add(uint8(1), uint8(0), []byte("\x00\xff"))
	opt := guest.Options{PollInterval: time.Millisecond, ExecTimeout: 100 * time.Millisecond, CommandTimeout: 100 * time.Millisecond, MaxOutput: 4096}
	f.Fuzz(func(t *testing.T, which, nth uint8, reply []byte) {
		target := fuzzCommands[int(which)%len(fuzzCommands)]
		g, _ := debian(1)
		inner := g.Agent()
		seen := 0
		var argvs [][]string
		a := guesttest.NewAgent(func(ctx context.Context, c guesttest.Command) ([]byte, error) {
			if c.Execute == "guest-exec" {
				var args struct {
					Path string   `json:"path"`
					Arg  []string `json:"arg"`
				}
				if err := json.Unmarshal(c.Arguments, &args); err == nil {
					argvs = append(argvs, append([]string{args.Path}, args.Arg...))
				}
			}
			if c.Execute == target {
				seen++
				if seen == int(nth%3)+1 {
					return reply, nil
				}
			}
			return inner.Command(ctx, mustJSON(c), c.Timeout)
		})
		res, err := guest.Configure(context.Background(), a, mac, 4, opt)
		for _, argv := range argvs {
			if strings.HasSuffix(argv[0], "ethtool") && (len(argv) < 3 || !argvIfName.MatchString(argv[2])) {
				t.Fatalf("ran %q", argv)
			}
		}
		if err != nil {
			if n := len(err.Error()); n > 2000 {
				t.Fatalf("a %d-byte error: %.300q…", n, err)
			}
			return
		}
		// The guest's word is all there is: success means it said 4.
		if res.After.Current != 4 || res.After.Max < 4 || !argvIfName.MatchString(res.IfName) {
			t.Fatalf("Configure() = %+v, nil", res)
		}
	})
}
