package virttest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// Migrate moves a running domain with the recorded events: each host's
// subscribers get their side's sequence, the destination runs the
// source's live XML (its queues) with the source's definition, and the
// source has nothing left.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	src, dst := virttest.New(), virttest.New()
	srcEvents, err := src.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dstEvents, err := dst.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := src.Define([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Start("vm"); err != nil {
		t.Fatal(err)
	}
	next(t, srcEvents) // defined
	next(t, srcEvents) // started
	live, _ := src.LiveXML("vm")
	inactive, _ := src.InactiveXML("vm")

	if err := src.Migrate(dst, "vm"); err != nil {
		t.Fatal(err)
	}
	recorded, err := virttest.MigrationEvents()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range recorded {
		ch := srcEvents
		if want.Destination {
			ch = dstEvents
		}
		if ev := next(t, ch); ev.Kind != want.Kind || ev.Detail != want.Detail || ev.Domain.UUID != d.UUID || ev.Domain.Name != "vm" {
			t.Errorf("event %+v, want %+v", ev, want)
		}
	}
	if _, err := src.LookupDomain(ctx, "vm"); !errors.Is(err, virt.ErrNotFound) {
		t.Errorf("the source still has vm: %v", err)
	}
	got, err := dst.LookupDomain(ctx, d.UUID)
	if err != nil || !got.Active || !got.Persistent {
		t.Errorf("destination LookupDomain = %+v, %v", got, err)
	}
	if dst.Paused("vm") {
		t.Error("vm is paused on the destination")
	}
	if x, _ := dst.LiveXML("vm"); !bytes.Equal(x, live) {
		t.Errorf("destination live XML:\n%s\nwant the source's:\n%s", x, live)
	}
	if x, _ := dst.InactiveXML("vm"); !bytes.Equal(x, inactive) {
		t.Errorf("destination definition:\n%s\nwant the source's:\n%s", x, inactive)
	}
	if err := src.Migrate(dst, "vm"); err == nil {
		t.Error("Migrate of a domain the source no longer has succeeded")
	}
}
