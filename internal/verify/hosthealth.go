package verify

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// slowCapabilities is the time above which a capabilities call, made right
// after another one, means libvirt is unusably slow. A healthy libvirtd
// answers in about 20 ms; one that re-probes QEMU on every call takes
// seconds (4–8 s seen on this project's CI machines), and then every
// define and start takes as long.
const slowCapabilities = time.Second

// qemuUsers are the users libvirt runs QEMU as when qemu.conf sets none:
// Debian's and Fedora's builds.
var qemuUsers = []string{"libvirt-qemu", "qemu"}

// account is a user as /etc/passwd and /etc/group know it.
type account struct {
	name   string
	uid    int
	groups map[int]bool // the primary group and every group that lists the user
}

// kvmProblem reports why libvirt's QEMU user cannot open DEV/kvm ("" when
// it can, or when there is no /dev/kvm). On a host where udev did not run,
// /dev/kvm is 0600 root:root; libvirt then finds its cached QEMU
// capabilities invalid on every call ("KVM was enabled when probing ...,
// but it is not available now") and probes QEMU again each time.
func (h Host) kvmProblem() (string, error) {
	fi, err := os.Stat(filepath.Join(h.DevRoot, "kvm"))
	if err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
		return "", nil // no /dev/kvm: nothing to open
	}
	uid, gid, ok := fileOwner(fi)
	if !ok {
		return "", nil
	}
	user, err := h.qemuAccount()
	if err != nil {
		return "", err
	}
	if user.uid == 0 {
		return "", nil
	}
	perm := fi.Mode().Perm()
	var can bool
	switch {
	case user.uid == uid:
		can = perm&0o600 == 0o600
	case user.groups[gid]:
		can = perm&0o060 == 0o060
	default:
		can = perm&0o006 == 0o006
	}
	if can {
		return "", nil
	}
	return fmt.Sprintf("%s is %s %s:%s and libvirt's QEMU user %s cannot open it",
		filepath.Join(h.DevRoot, "kvm"), "c"+perm.String()[1:], h.idName("passwd", uid), h.idName("group", gid), user.name), nil
}

// qemuAccount finds the user libvirt runs QEMU as: qemu.conf's user
// setting, else the distribution default that exists.
func (h Host) qemuAccount() (account, error) {
	names := qemuUsers
	if u := qemuConfUser(filepath.Join(h.EtcRoot, "libvirt", "qemu.conf")); u != "" {
		names = []string{u}
	}
	for _, n := range names {
		if n == "root" || n == "+0" {
			return account{name: n}, nil
		}
		if a, ok := h.lookupAccount(n); ok {
			return a, nil
		}
	}
	return account{}, fmt.Errorf("libvirt's QEMU user (%s) is not in %s", strings.Join(names, " or "),
		filepath.Join(h.EtcRoot, "passwd"))
}

// qemuConfUser returns the value of `user = "NAME"` in libvirt's qemu.conf,
// or "" when it is not set (or the file cannot be read).
func qemuConfUser(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	user := ""
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.TrimSpace(k) != "user" {
			continue
		}
		user = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return user
}

// lookupAccount reads name's uid and groups from ETC/passwd and ETC/group.
func (h Host) lookupAccount(name string) (account, bool) {
	a := account{name: name, uid: -1, groups: map[int]bool{}}
	eachEntry(filepath.Join(h.EtcRoot, "passwd"), func(f []string) {
		if len(f) >= 4 && f[0] == name {
			a.uid, _ = strconv.Atoi(f[2])
			if g, err := strconv.Atoi(f[3]); err == nil {
				a.groups[g] = true
			}
		}
	})
	if a.uid < 0 {
		return account{}, false
	}
	eachEntry(filepath.Join(h.EtcRoot, "group"), func(f []string) {
		if len(f) < 4 {
			return
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == name {
				if g, err := strconv.Atoi(f[2]); err == nil {
					a.groups[g] = true
				}
			}
		}
	})
	return a, true
}

// idName is the name of a uid (file "passwd") or gid ("group"), else the number.
func (h Host) idName(file string, id int) string {
	name := strconv.Itoa(id)
	eachEntry(filepath.Join(h.EtcRoot, file), func(f []string) {
		if len(f) >= 3 && f[2] == strconv.Itoa(id) && name == strconv.Itoa(id) {
			name = f[0]
		}
	})
	return name
}

// eachEntry calls f with the colon-separated fields of every line of path.
func eachEntry(path string, f func(fields []string)) {
	fh, err := os.Open(path)
	if err != nil {
		return
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if line := sc.Text(); line != "" && line[0] != '#' {
			f(strings.Split(line, ":"))
		}
	}
}

// hostHealth checks what makes libvirt unusable for virtmq on this host,
// whatever the domain: libvirt's QEMU user cannot open /dev/kvm, and
// capabilities calls that take seconds (the symptom, whatever the cause).
func (v *verifier) hostHealth(ctx context.Context) {
	why, err := v.host.kvmProblem()
	switch {
	case err != nil:
		v.add(Skip, "host-kvm", "", nil, nil, err, msg("host: cannot check /dev/kvm: %v", err))
	case why != "":
		v.add(Fail, "host-kvm", "", nil, nil, nil,
			msg("host: %s, so libvirt probes QEMU again on every call that needs its capabilities (seconds each: defines and starts time out); "+
				"fix: chgrp kvm /dev/kvm; chmod 0660 /dev/kvm (what Debian's udev rule sets at boot)", why))
	}

	// The first call may legitimately probe QEMU once (an empty or stale
	// cache); the second must be fast.
	if _, err := v.conn.Capabilities(ctx); err != nil {
		v.add(Fail, "host-libvirt", "", nil, nil, err, msg("host: libvirt capabilities: %v", err))
		return
	}
	t0 := v.host.now()
	_, err = v.conn.Capabilities(ctx)
	took := v.host.now().Sub(t0)
	ms := int(took.Milliseconds())
	limit := int(slowCapabilities.Milliseconds())
	switch {
	case err != nil:
		v.add(Fail, "host-libvirt", "", nil, nil, err, msg("host: libvirt capabilities: %v", err))
	case took > slowCapabilities:
		hint := "a libvirt that re-probes QEMU on every call: see libvirtd's log with virt-admin daemon-log-filters 1:qemu.qemu_capabilities"
		if why != "" {
			hint = "see host-kvm"
		}
		v.add(Fail, "host-libvirt", "", &ms, &limit, nil,
			msg("host: libvirt took %s for a capabilities call right after another (healthy: about 20 ms; %s)", took.Round(time.Millisecond), hint))
	default:
		v.add(OK, "host-libvirt", "", &ms, &limit, nil, msg("host: libvirt answers a capabilities call in %s", took.Round(time.Millisecond)))
	}
}

// now is the host's clock.
func (h Host) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// fileOwner returns the uid and gid of a file.
func fileOwner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
