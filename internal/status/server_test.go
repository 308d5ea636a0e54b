package status

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmqs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestRoundtrip(t *testing.T) {
	path := filepath.Join(shortDir(t), "run", "virtmq", "status.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket: %v, %v", fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o755 {
		t.Fatalf("directory: %v, %v", di.Mode(), err)
	}
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	want := Snapshot{
		Generated: at,
		Version:   "1.0",
		Libvirt:   Libvirt{Connected: true, Socket: "/run/libvirt/virtqemud-sock", Since: at, Reconnects: 2},
		Policy:    Policy{Sources: []string{"/etc/virtmq/policy.yaml"}, Mode: "audit", LoadedAt: at, LastReloadError: "bad"},
		Domains: []Domain{{
			Name: "web1", UUID: "39ac667a-8be7-47c6-94aa-6237136bddf1", Persistent: true, Active: true,
			State: StatePendingColdBoot, LastAction: "redefined", LastAt: at, Problem: "cold boot",
			NICs: []NIC{{MAC: "52:54:00:b4:f7:07", Managed: true, Wanted: 4, Defined: 4, Running: 1, QMPVirtqueues: 3,
				MQ: false, Rule: "defaults", GuestIfName: "eth0", GuestWanted: 1, GuestCurrent: 1, GuestMax: 1, GuestStep: "done", GuestAt: at}},
		}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, func() Snapshot { return want }) }()

	for range 3 { // one document per connection
		got, err := Fetch(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Fetch =\n%+v\nwant\n%+v", got, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Serve returned: %v", err)
	}
	if _, err := Fetch(context.Background(), path); err == nil || !strings.Contains(err.Error(), "is it running") {
		t.Errorf("Fetch without server = %v", err)
	}
}

func TestListenStaleAndBusy(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "s.sock")
	// A stale socket: bound, nobody listening.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	// A live one: another agent.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Listen on a live socket = %v", err)
	}
	// Not a socket.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a file = %v", err)
	}
}

func TestFetchBadAndSlowServers(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	mode := make(chan string, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			switch <-mode {
			case "garbage":
				c.Write([]byte("not json"))
				c.Close()
			case "hang":
				defer c.Close() // never answers
			}
		}
	}()
	mode <- "garbage"
	if _, err := Fetch(context.Background(), path); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Errorf("garbage: %v", err)
	}
	mode <- "hang"
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Fetch(ctx, path); err == nil {
		t.Error("hang: no error")
	}
}

func TestJSONNames(t *testing.T) {
	b, err := json.Marshal(Snapshot{Domains: []Domain{{NICs: []NIC{{}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"libvirt"`, `"policy"`, `"domains"`, `"wanted_queues"`, `"defined_queues"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}
