package agent

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
	"github.com/virtmq/virtmq/policy"
)

// xmlReads records the flags of every DomainXML call made through the
// connections it wraps.
type xmlReads struct {
	mu    sync.Mutex
	flags []virt.XMLFlags
}

type recordingConn struct {
	virt.Conn
	r *xmlReads
}

func (c recordingConn) DomainXML(ctx context.Context, d virt.Domain, flags virt.XMLFlags) ([]byte, error) {
	c.r.mu.Lock()
	c.r.flags = append(c.r.flags, flags)
	c.r.mu.Unlock()
	return c.Conn.DomainXML(ctx, d, flags)
}

// recordReads makes the agent's connections record their DomainXML flags.
func (h *harness) recordReads() *xmlReads {
	r := &xmlReads{}
	h.cfg.Dial = func(ctx context.Context, sockets []string) (virt.Conn, string, error) {
		c, s, err := h.fake.Dial(ctx, sockets)
		if err != nil {
			return nil, s, err
		}
		return recordingConn{c, r}, s, nil
	}
	return r
}

// check fails unless every read of a definition (what the agent redefines
// from) asked for secrets and no other read did.
func (r *xmlReads) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	inactive, live := 0, 0
	for _, f := range r.flags {
		switch {
		case f == virt.XMLInactive|virt.XMLSecure:
			inactive++
		case f == virt.XMLLive:
			live++
		default:
			t.Errorf("DomainXML read with flags %#x: want XMLInactive|XMLSecure to redefine, XMLLive otherwise", f)
		}
	}
	if inactive == 0 {
		t.Error("the agent never read the definition")
	}
}

// TestRedefineKeepsConsolePasswords: libvirt leaves
// <graphics passwd> out of XML read without VIR_DOMAIN_XML_SECURE, so a
// redefine from such XML deleted the VNC and SPICE passwords. The new
// definition must be the rewrite of the whole stored one, passwords
// included.
func TestRedefineKeepsConsolePasswords(t *testing.T) {
	for _, running := range []bool{false, true} {
		name := "shut off"
		if running {
			name = "running"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			reads := h.recordReads()
			doc := virttest.GraphicsPasswdXML()
			if running {
				// Running before the agent starts: its resync redefines a
				// running domain (started with the old count).
				mustDefine(t, h.fake, doc)
				must(t, h.fake.Start("console"))
				h.start()
			} else {
				h.start()
				mustDefine(t, h.fake, doc)
			}
			state := status.StateRewritten
			if running {
				state = status.StatePendingColdBoot
			}
			h.waitState("console", state)
			h.settle()

			pol, err := policy.Load(h.cfg.PolicyPath)
			must(t, err)
			want, _, err := domxml.Apply(pol, doc)
			must(t, err)
			if bytes.Equal(want, doc) {
				t.Fatal("the policy does not change the fixture")
			}
			got, _ := h.fake.InactiveXML("console")
			if !bytes.Equal(got, want) {
				t.Errorf("definition after the redefine:\n%s\nwant:\n%s", got, want)
			}
			for _, pw := range virttest.GraphicsPasswords {
				if !bytes.Contains(got, []byte(pw)) {
					t.Errorf("the redefine lost %s", pw)
				}
			}
			if n := h.fake.Calls(virttest.MethodDefineXML); n != 1 {
				t.Errorf("DefineXML calls = %d, want 1", n)
			}
			reads.check(t)
		})
	}
}
