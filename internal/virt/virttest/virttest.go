// Package virttest provides an in-memory libvirt for tests: a fake
// virt.Conn whose domains, events, guest agent and QMP replies the test
// controls, with fault injection (fail the next calls of a method, drop the
// connection).
//
// A Conn is one client connection to the fake daemon. New returns the first
// one; Dial returns further connections to the same daemon, so a test can
// drop a connection (Disconnect) and let the code under test reconnect. The
// test drives the daemon through any Conn's helper methods (Define, Start,
// Stop, AgentConnect, ...): they act on the shared state and emit events to
// every open connection, like a real daemon.
package virttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/virtmq/virtmq/internal/virt"
)

// Method names for FailNext and Calls.
const (
	MethodListDomains    = "ListDomains"
	MethodLookupDomain   = "LookupDomain"
	MethodDomainXML      = "DomainXML"
	MethodDefineXML      = "DefineXML"
	MethodAgentCommand   = "AgentCommand"
	MethodMonitorCommand = "MonitorCommand"
	MethodCapabilities   = "Capabilities"
	MethodEvents         = "Events"
	MethodStartDomain    = "StartDomain"
	MethodShutdownDomain = "ShutdownDomain"
	MethodDestroyDomain  = "DestroyDomain"
	MethodDial           = "Dial"

	// MethodDomainXMLSecure counts only the DomainXML calls that asked
	// for virt.XMLSecure (they count as MethodDomainXML too); faults are
	// queued on MethodDomainXML.
	MethodDomainXMLSecure = "DomainXML+XMLSecure"
)

// AgentFunc answers a guest agent command for a domain.
type AgentFunc func(ctx context.Context, d virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error)

// MonitorFunc answers a QMP command for a domain.
type MonitorFunc func(ctx context.Context, d virt.Domain, cmd []byte) ([]byte, error)

// ValidateFunc checks a definition before DefineXML accepts it; a non-nil
// error is returned to the caller as libvirt's validation error (wrapping
// virt.ErrInvalidDefinition).
type ValidateFunc func(xml []byte) error

// CallFunc observes every call made through a Conn, after it completed.
type CallFunc func(method string, d virt.Domain, err error)

// daemon is the state shared by every connection.
type daemon struct {
	mu        sync.Mutex
	domains   map[string]*domain // by UUID
	conns     []*Conn
	faults    map[string][]error
	calls     map[string]int
	agent     AgentFunc
	monitor   MonitorFunc
	validate  ValidateFunc
	normalize func([]byte) []byte
	onCall    CallFunc
	nextID    int
	stalls    []chan struct{}   // for the next DefineXML calls (StallDefine)
	deafACPI  map[string]bool   // domain names whose guest ignores ShutdownDomain (SetIgnoreACPI)
	noReboot  bool              // RebootEvents reports false (SetRebootEvents)
	networks  map[string][]byte // network XML by name (DefineNetwork)
}

type domain struct {
	name, uuid string
	persistent bool
	active     bool
	inactive   []byte // persistent definition (nil for transient)
	live       []byte // live XML while active
	paused     bool   // suspended (while active)
	// saved is the live XML of a managed save image (ManagedSave): a
	// plain start restores it, with the queues it ran with.
	saved []byte
}

func (d *domain) virt() virt.Domain {
	return virt.Domain{Name: d.name, UUID: d.uuid, Persistent: d.persistent, Active: d.active}
}

// Conn is one connection to the fake daemon. It implements virt.Conn.
type Conn struct {
	d *daemon

	mu           sync.Mutex
	closed       bool
	disconnected chan struct{}
	subs         []*subscriber
}

var _ virt.Conn = (*Conn)(nil)

// New returns a connection to a new, empty fake daemon.
func New() *Conn {
	d := &daemon{
		domains: map[string]*domain{},
		faults:  map[string][]error{},
		calls:   map[string]int{},
	}
	return d.connect()
}

func (d *daemon) connect() *Conn {
	c := &Conn{d: d, disconnected: make(chan struct{})}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c
}

// Dial returns a new connection to the same daemon; its signature matches
// virt.Dial so that it can stand in for it. It fails when a fault is
// queued for MethodDial.
func (c *Conn) Dial(ctx context.Context, _ []string) (virt.Conn, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	c.d.mu.Lock()
	c.d.calls[MethodDial]++
	err := c.d.takeFault(MethodDial)
	c.d.mu.Unlock()
	if err != nil {
		return nil, "", err
	}
	return c.d.connect(), "virttest", nil
}

// FailNext makes the next n calls of method (on any connection) fail with
// err. When err is virt.ErrDisconnected (or wraps it), the connection that
// made the call is dropped as well, as a daemon crash would.
func (c *Conn) FailNext(method string, n int, err error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	for range n {
		c.d.faults[method] = append(c.d.faults[method], err)
	}
}

// StallDefine makes the next DefineXML call stall in the daemon until
// release is called, as a libvirtd busy for a long time would. The caller
// gets ctx's error when ctx ends first, and the define still happens at
// release (with its event), as with go-libvirt, whose calls cannot be
// cancelled: a define that timed out on the client can land afterwards.
// release may be called more than once.
func (c *Conn) StallDefine() (release func()) {
	ch := make(chan struct{})
	c.d.mu.Lock()
	c.d.stalls = append(c.d.stalls, ch)
	c.d.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// takeFault pops the next fault for method; d.mu must be held.
func (d *daemon) takeFault(method string) error {
	q := d.faults[method]
	if len(q) == 0 {
		return nil
	}
	d.faults[method] = q[1:]
	return q[0]
}

// Calls returns how many calls of method were made through any connection
// (including failed ones).
func (c *Conn) Calls(method string) int {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	return c.d.calls[method]
}

// SetAgent scripts the guest agent. Without one, AgentCommand fails with
// virt.ErrAgentUnavailable.
func (c *Conn) SetAgent(f AgentFunc) {
	c.locked(func(d *daemon) { d.agent = f })
}

// SetMonitor scripts QMP. Without one, MonitorCommand returns a QMP
// CommandNotFound error reply.
func (c *Conn) SetMonitor(f MonitorFunc) {
	c.locked(func(d *daemon) { d.monitor = f })
}

// SetValidate sets the schema check DefineXML applies.
func (c *Conn) SetValidate(f ValidateFunc) {
	c.locked(func(d *daemon) { d.validate = f })
}

// SetNormalize sets how DefineXML turns the XML it is given into the
// stored definition, as libvirt's parse and format do (default: stored as
// given, plus a <uuid> when missing).
func (c *Conn) SetNormalize(f func(doc []byte) []byte) {
	c.d.mu.Lock()
	c.d.normalize = f
	c.d.mu.Unlock()
}

// OnCall sets a function called after every call made through a
// connection (not the test helpers). It runs without locks held.
func (c *Conn) OnCall(f CallFunc) {
	c.locked(func(d *daemon) { d.onCall = f })
}

// locked runs f with the daemon's lock held.
func (c *Conn) locked(f func(d *daemon)) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	f(c.d)
}

// Disconnect drops every open connection, as a daemon restart or idle exit
// does: their Disconnected channels close, their event streams end and
// their calls fail with virt.ErrDisconnected. Dial works again afterwards.
func (c *Conn) Disconnect() {
	c.d.mu.Lock()
	conns := c.d.conns
	c.d.conns = nil
	c.d.mu.Unlock()
	for _, x := range conns {
		x.drop()
	}
}

func (c *Conn) drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	close(c.disconnected)
	for _, s := range c.subs {
		s.close()
	}
	c.subs = nil
}

func (d *daemon) forget(c *Conn) {
	d.mu.Lock()
	d.conns = slices.DeleteFunc(d.conns, func(x *Conn) bool { return x == c })
	d.mu.Unlock()
}

// begin counts a call and returns its injected fault, or ErrDisconnected
// when the connection is gone.
func (c *Conn) begin(ctx context.Context, method string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.d.mu.Lock()
	c.d.calls[method]++
	err := c.d.takeFault(method)
	c.d.mu.Unlock()
	if c.isClosed() {
		return fmt.Errorf("%s: %w", method, virt.ErrDisconnected)
	}
	if err != nil {
		if errors.Is(err, virt.ErrDisconnected) {
			c.d.forget(c)
			c.drop()
		}
		return err
	}
	return nil
}

func (c *Conn) end(method string, d virt.Domain, err error) {
	c.d.mu.Lock()
	f := c.d.onCall
	c.d.mu.Unlock()
	if f != nil {
		f(method, d, err)
	}
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// ListDomains implements virt.Conn.
func (c *Conn) ListDomains(ctx context.Context) ([]virt.Domain, error) {
	if err := c.begin(ctx, MethodListDomains); err != nil {
		c.end(MethodListDomains, virt.Domain{}, err)
		return nil, err
	}
	c.d.mu.Lock()
	out := make([]virt.Domain, 0, len(c.d.domains))
	for _, d := range c.d.domains {
		out = append(out, d.virt())
	}
	c.d.mu.Unlock()
	slices.SortFunc(out, func(a, b virt.Domain) int { return compare(a.Name, b.Name) })
	c.end(MethodListDomains, virt.Domain{}, nil)
	return out, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// find returns the domain named or with the UUID s; d.mu must be held.
func (d *daemon) find(s string) *domain {
	if x, ok := d.domains[s]; ok {
		return x
	}
	for _, x := range d.domains {
		if x.name == s {
			return x
		}
	}
	return nil
}

func notFound(s string) error {
	return fmt.Errorf("%w: no domain with matching name or uuid %q", virt.ErrNotFound, s)
}

// LookupDomain implements virt.Conn.
func (c *Conn) LookupDomain(ctx context.Context, nameOrUUID string) (virt.Domain, error) {
	if err := c.begin(ctx, MethodLookupDomain); err != nil {
		c.end(MethodLookupDomain, virt.Domain{Name: nameOrUUID}, err)
		return virt.Domain{}, err
	}
	c.d.mu.Lock()
	x := c.d.find(nameOrUUID)
	var out virt.Domain
	if x != nil {
		out = x.virt()
	}
	c.d.mu.Unlock()
	if x == nil {
		err := notFound(nameOrUUID)
		c.end(MethodLookupDomain, virt.Domain{Name: nameOrUUID}, err)
		return virt.Domain{}, err
	}
	c.end(MethodLookupDomain, out, nil)
	return out, nil
}

func (d *daemon) findDomain(v virt.Domain) *domain {
	if v.UUID != "" {
		return d.domains[v.UUID]
	}
	return d.find(v.Name)
}

// DomainXML implements virt.Conn. For an inactive domain, or a transient
// domain asked for its inactive XML, it behaves like libvirt: the live XML
// of a transient domain is its only XML. Without virt.XMLSecure it leaves
// secrets out as libvirt does (see withoutSecrets); the stored XML keeps
// them.
func (c *Conn) DomainXML(ctx context.Context, v virt.Domain, flags virt.XMLFlags) ([]byte, error) {
	secure := flags&virt.XMLSecure != 0
	if secure {
		c.d.mu.Lock()
		c.d.calls[MethodDomainXMLSecure]++
		c.d.mu.Unlock()
	}
	if err := c.begin(ctx, MethodDomainXML); err != nil {
		c.end(MethodDomainXML, v, err)
		return nil, err
	}
	c.d.mu.Lock()
	x := c.d.findDomain(v)
	var out []byte
	if x != nil {
		switch {
		case !x.active || (flags&virt.XMLInactive != 0 && x.persistent):
			out = bytes.Clone(x.inactive)
		default:
			out = bytes.Clone(x.live)
		}
	}
	c.d.mu.Unlock()
	if !secure {
		out = withoutSecrets(out)
	}
	if x == nil {
		err := notFound(v.Name)
		c.end(MethodDomainXML, v, err)
		return nil, err
	}
	c.end(MethodDomainXML, v, nil)
	return out, nil
}

// DefineXML implements virt.Conn: it validates (SetValidate), stores the
// definition and emits EventDefined to every connection.
func (c *Conn) DefineXML(ctx context.Context, doc []byte) error {
	if err := c.begin(ctx, MethodDefineXML); err != nil {
		c.end(MethodDefineXML, virt.Domain{}, err)
		return err
	}
	c.d.mu.Lock()
	var stall chan struct{}
	if len(c.d.stalls) > 0 {
		stall, c.d.stalls = c.d.stalls[0], c.d.stalls[1:]
	}
	c.d.mu.Unlock()
	if stall == nil {
		v, err := c.define(doc)
		c.end(MethodDefineXML, v, err)
		return err
	}
	doc = bytes.Clone(doc)
	done := make(chan error, 1)
	go func() {
		<-stall
		v, err := c.define(doc)
		c.end(MethodDefineXML, v, err)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AgentCommand implements virt.Conn through the SetAgent function.
func (c *Conn) AgentCommand(ctx context.Context, v virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
	return c.commandCall(ctx, MethodAgentCommand, v,
		func(name string) error {
			return fmt.Errorf("%w: domain %q is not running", virt.ErrAgentUnavailable, name)
		},
		func() ([]byte, error) {
			c.d.mu.Lock()
			f := c.d.agent
			x := c.d.findDomain(v)
			paused := x != nil && x.paused
			c.d.mu.Unlock()
			switch {
			case f == nil:
				return nil, fmt.Errorf("%w: QEMU guest agent is not connected", virt.ErrAgentUnavailable)
			case paused:
				// The guest's vCPUs do not run: qemu-ga cannot answer, and
				// libvirt gives up after the timeout.
				return nil, fmt.Errorf("%w: Guest agent is not responding: QEMU guest agent is not connected", virt.ErrTimeout)
			}
			return f(ctx, v, cmd, timeout)
		})
}

// MonitorCommand implements virt.Conn through the SetMonitor function.
func (c *Conn) MonitorCommand(ctx context.Context, v virt.Domain, cmd []byte) ([]byte, error) {
	return c.commandCall(ctx, MethodMonitorCommand, v,
		func(name string) error {
			return fmt.Errorf("requested operation is not valid: domain %q is not running", name)
		},
		func() ([]byte, error) {
			c.d.mu.Lock()
			f := c.d.monitor
			c.d.mu.Unlock()
			if f == nil {
				return []byte(`{"error":{"class":"CommandNotFound","desc":"The command has not been found"}}`), nil
			}
			return f(ctx, v, cmd)
		})
}

// commandCall runs a command on a running domain's agent or monitor: the
// call's fault, then libvirt's errors for a domain that does not exist or
// does not run (notRunning), then send.
func (c *Conn) commandCall(ctx context.Context, method string, v virt.Domain, notRunning func(name string) error, send func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := c.begin(ctx, method)
	if err == nil {
		c.d.mu.Lock()
		x := c.d.findDomain(v)
		active := x != nil && x.active
		c.d.mu.Unlock()
		switch {
		case x == nil:
			err = notFound(v.Name)
		case !active:
			err = notRunning(v.Name)
		default:
			out, err = send()
		}
	}
	c.end(method, v, err)
	return out, err
}

// capabilities is the start of what libvirt 9.0 answered
// virConnectGetCapabilities with on this project's real stack (the rest,
// CPU models and guest machine lists, is cut).
const capabilities = `<capabilities>

  <host>
    <uuid>00000000-0000-0000-0000-000000000000</uuid>
    <cpu>
      <arch>x86_64</arch>
    </cpu>
  </host>

  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <domain type='qemu'/>
    </arch>
  </guest>

</capabilities>
`

// Capabilities implements virt.Conn: a fixed, shortened real reply. Use
// FailNext to make it fail and OnCall (with a fake clock) to make it slow.
func (c *Conn) Capabilities(ctx context.Context) ([]byte, error) {
	if err := c.begin(ctx, MethodCapabilities); err != nil {
		c.end(MethodCapabilities, virt.Domain{}, err)
		return nil, err
	}
	c.end(MethodCapabilities, virt.Domain{}, nil)
	return []byte(capabilities), nil
}

// Events implements virt.Conn. The stream is unbounded: a slow reader
// never blocks the fake daemon.
func (c *Conn) Events(ctx context.Context) (<-chan virt.Event, error) {
	if err := c.begin(ctx, MethodEvents); err != nil {
		c.end(MethodEvents, virt.Domain{}, err)
		return nil, err
	}
	s := newSubscriber()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, virt.ErrDisconnected
	}
	c.subs = append(c.subs, s)
	c.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-s.done:
		}
		c.mu.Lock()
		c.subs = slices.DeleteFunc(c.subs, func(x *subscriber) bool { return x == s })
		c.mu.Unlock()
		s.close()
	}()
	c.end(MethodEvents, virt.Domain{}, nil)
	return s.out, nil
}

// Disconnected implements virt.Conn.
func (c *Conn) Disconnected() <-chan struct{} { return c.disconnected }

// Close implements virt.Conn.
func (c *Conn) Close() error {
	c.d.forget(c)
	c.drop()
	return nil
}

// emit sends ev to every open connection's subscribers.
func (d *daemon) emit(ev virt.Event) {
	d.mu.Lock()
	conns := slices.Clone(d.conns)
	d.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		for _, s := range c.subs {
			s.push(ev)
		}
		c.mu.Unlock()
	}
}

// subscriber is an unbounded event queue feeding a channel.
type subscriber struct {
	mu     sync.Mutex
	queue  []virt.Event
	wake   chan struct{}
	done   chan struct{}
	closed bool
	out    chan virt.Event
}

func newSubscriber() *subscriber {
	s := &subscriber{wake: make(chan struct{}, 1), done: make(chan struct{}), out: make(chan virt.Event)}
	go s.run()
	return s
}

func (s *subscriber) push(ev virt.Event) {
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}

func (s *subscriber) run() {
	defer close(s.out)
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, ev := range q {
			select {
			case s.out <- ev:
			case <-s.done:
				return
			}
		}
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
	}
}

// --- test helpers: act on the daemon like virsh would ---

type ident struct {
	Name string `xml:"name"`
	UUID string `xml:"uuid"`
}

func parseIdent(doc []byte) (ident, error) {
	var id ident
	if err := xml.Unmarshal(doc, &id); err != nil {
		return id, fmt.Errorf("XML error: %w", err)
	}
	if id.Name == "" {
		return id, errors.New("XML error: missing domain name")
	}
	return id, nil
}

var uuidElem = regexp.MustCompile(`<uuid>[^<]*</uuid>`)

// define stores doc as a persistent definition, like virDomainDefineXML.
// A document without <uuid> gets one, inserted after <name>.
func (c *Conn) define(doc []byte) (virt.Domain, error) {
	id, err := parseIdent(doc)
	if err != nil {
		return virt.Domain{Name: id.Name}, fmt.Errorf("%w: %w", virt.ErrInvalidDefinition, err)
	}
	c.d.mu.Lock()
	validate, normalize := c.d.validate, c.d.normalize
	c.d.mu.Unlock()
	if validate != nil {
		if err := validate(doc); err != nil {
			return virt.Domain{Name: id.Name}, fmt.Errorf("%w: XML document failed to validate against schema: %w", virt.ErrInvalidDefinition, err)
		}
	}
	if normalize != nil {
		doc = normalize(bytes.Clone(doc))
	}
	c.d.mu.Lock()
	x := c.d.find(id.Name)
	if x != nil && id.UUID != "" && x.uuid != id.UUID {
		c.d.mu.Unlock()
		return virt.Domain{Name: id.Name}, fmt.Errorf("operation failed: domain '%s' already exists with uuid %s", x.name, x.uuid)
	}
	if x == nil && id.UUID != "" {
		x = c.d.domains[id.UUID]
	}
	detail := 1 // updated
	if x == nil {
		detail = 0 // added
		u := id.UUID
		if u == "" {
			u = newUUID()
		}
		x = &domain{name: id.Name, uuid: u}
		c.d.domains[u] = x
	}
	if id.UUID == "" {
		doc = withUUID(doc, x.uuid)
	}
	x.name = id.Name
	x.persistent = true
	x.inactive = bytes.Clone(doc)
	v := x.virt()
	c.d.mu.Unlock()
	c.d.emit(virt.Event{Kind: virt.EventDefined, Domain: virt.Domain{Name: v.Name, UUID: v.UUID}, Detail: detail})
	return v, nil
}

func withUUID(doc []byte, u string) []byte {
	if uuidElem.Match(doc) {
		return doc
	}
	i := bytes.Index(doc, []byte("</name>"))
	if i < 0 {
		return doc
	}
	i += len("</name>")
	return slices.Concat(doc[:i], []byte("<uuid>"+u+"</uuid>"), doc[i:])
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Define defines (or redefines) a persistent domain as a user would, with
// validation, emitting EventDefined. It returns the domain.
func (c *Conn) Define(doc []byte) (virt.Domain, error) { return c.define(doc) }

// Start starts a persistent domain: its live XML is the definition with a
// device alias (<alias name='netK'/>) and a tap name added to each
// interface, as libvirt does. It emits EventStarted.
func (c *Conn) Start(name string) error {
	c.d.mu.Lock()
	x := c.d.find(name)
	if x == nil {
		c.d.mu.Unlock()
		return notFound(name)
	}
	if x.active {
		c.d.mu.Unlock()
		return fmt.Errorf("domain %q is already active", name)
	}
	x.active = true
	x.live = c.d.liveXML(x.inactive)
	if x.saved != nil {
		// libvirt restores a managed save image: the live XML it saved.
		x.live, x.saved = x.saved, nil
	}
	v := x.virt()
	c.d.mu.Unlock()
	c.d.emit(virt.Event{Kind: virt.EventStarted, Domain: virt.Domain{Name: v.Name, UUID: v.UUID}})
	return nil
}

// Create starts a transient domain from doc (virsh create), emitting
// EventStarted.
func (c *Conn) Create(doc []byte) (virt.Domain, error) {
	id, err := parseIdent(doc)
	if err != nil {
		return virt.Domain{}, err
	}
	c.d.mu.Lock()
	if x := c.d.find(id.Name); x != nil {
		c.d.mu.Unlock()
		return virt.Domain{}, fmt.Errorf("domain %q already exists", id.Name)
	}
	u := id.UUID
	if u == "" {
		u = newUUID()
		doc = withUUID(doc, u)
	}
	x := &domain{name: id.Name, uuid: u, active: true}
	x.live = c.d.liveXML(doc)
	c.d.domains[u] = x
	v := x.virt()
	c.d.mu.Unlock()
	c.d.emit(virt.Event{Kind: virt.EventStarted, Domain: virt.Domain{Name: v.Name, UUID: v.UUID}})
	return v, nil
}

// graphicsTag matches a <graphics> start tag; passwdAttr a passwd
// attribute in it, with the whitespace before it. A quoted value cannot
// hold its own quote character, so [^']* and [^"]* end at the right place.
var (
	graphicsTag = regexp.MustCompile(`<graphics\b(?:[^>'"]|'[^']*'|"[^"]*")*>`)
	passwdAttr  = regexp.MustCompile(`\s+passwd\s*=\s*(?:'[^']*'|"[^"]*")`)
)

// withoutSecrets returns doc as libvirt formats it without
// VIR_DOMAIN_XML_SECURE: the passwd attribute of every <graphics> left
// out, and nothing else. libvirt's virDomainGraphicsAuthDefFormatAttr
// (src/conf/domain_conf.c, called for VNC and SPICE from
// virDomainGraphicsDefFormat) writes passwd only when
// VIR_DOMAIN_DEF_FORMAT_SECURE is set, but passwdValidTo and connected
// whenever a password is set, secure or not: they stay. (Redefining from
// such XML drops all three, since libvirt's parser ignores them without
// passwd.) Seen with libvirt 9.0: a domain defined with
// <graphics type='vnc' autoport='yes' passwd='...'/> lost its password
// when redefined from XML read without the flag.
func withoutSecrets(doc []byte) []byte {
	return graphicsTag.ReplaceAllFunc(doc, func(tag []byte) []byte {
		return passwdAttr.ReplaceAll(tag, nil)
	})
}

var interfaceEnd = regexp.MustCompile(`(?s)(<interface\b.*?)(\s*)</interface>`)

// liveXML mimics what libvirt adds to a running domain's NICs; d.mu must be held.
func (d *daemon) liveXML(doc []byte) []byte {
	k := 0
	return interfaceEnd.ReplaceAllFunc(doc, func(m []byte) []byte {
		sub := interfaceEnd.FindSubmatch(m)
		n := k
		k++
		d.nextID++
		add := "<target dev='vnet" + strconv.Itoa(d.nextID) + "'/><alias name='net" + strconv.Itoa(n) + "'/>"
		if bytes.Contains(sub[1], []byte("<alias ")) {
			add = ""
		}
		return slices.Concat(sub[1], []byte(add), sub[2], []byte("</interface>"))
	})
}

// Stop shuts a domain off, emitting EventStopped. A transient domain
// disappears; like libvirt, no EventUndefined is sent for it.
func (c *Conn) Stop(name string) error {
	return c.act(name, func(x *domain) (virt.EventKind, error) {
		if !x.active {
			return 0, fmt.Errorf("domain %q is not running", name)
		}
		c.d.stopLocked(x)
		return virt.EventStopped, nil
	})
}

// Undefine removes a domain's persistent definition, emitting
// EventUndefined. A running domain becomes transient.
func (c *Conn) Undefine(name string) error {
	return c.act(name, func(x *domain) (virt.EventKind, error) {
		if !x.persistent {
			return 0, notFound(name)
		}
		x.persistent = false
		x.inactive = nil
		if !x.active {
			delete(c.d.domains, x.uuid)
		}
		return virt.EventUndefined, nil
	})
}

// act runs f on the named domain with the daemon's lock held, then emits
// the event f returns (EventOther: none). A domain that does not exist is
// notFound.
func (c *Conn) act(name string, f func(x *domain) (virt.EventKind, error)) error {
	c.d.mu.Lock()
	x := c.d.find(name)
	if x == nil {
		c.d.mu.Unlock()
		return notFound(name)
	}
	kind, err := f(x)
	ev := virt.Event{Kind: kind, Domain: virt.Domain{Name: x.name, UUID: x.uuid}}
	c.d.mu.Unlock()
	if err == nil && kind != virt.EventOther {
		c.d.emit(ev)
	}
	return err
}

// stopLocked shuts x off (the daemon's lock held): a transient domain
// disappears.
func (d *daemon) stopLocked(x *domain) {
	x.active, x.paused, x.live = false, false, nil
	if !x.persistent {
		delete(d.domains, x.uuid)
	}
}

// AgentConnect emits EventAgentConnected for a running domain, as libvirt
// does when the guest's qemu-ga opens its channel.
func (c *Conn) AgentConnect(name string) error {
	return c.agentEvent(name, virt.EventAgentConnected)
}

func (c *Conn) agentEvent(name string, kind virt.EventKind) error {
	c.d.mu.Lock()
	x := c.d.find(name)
	if x == nil || !x.active {
		c.d.mu.Unlock()
		return fmt.Errorf("domain %q is not running", name)
	}
	v := virt.Domain{Name: x.name, UUID: x.uuid}
	c.d.mu.Unlock()
	c.d.emit(virt.Event{Kind: kind, Domain: v})
	return nil
}

// InactiveXML returns a domain's persistent definition as stored,
// secrets included (what virsh dumpxml --inactive --security-info prints).
func (c *Conn) InactiveXML(name string) ([]byte, bool) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	x := c.d.find(name)
	if x == nil || !x.persistent {
		return nil, false
	}
	return bytes.Clone(x.inactive), true
}

// LiveXML returns a running domain's live XML as stored, secrets included.
func (c *Conn) LiveXML(name string) ([]byte, bool) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	x := c.d.find(name)
	if x == nil || !x.active {
		return nil, false
	}
	return bytes.Clone(x.live), true
}

// SetLiveXML replaces a running domain's live XML (e.g. with a recorded one).
func (c *Conn) SetLiveXML(name string, doc []byte) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	x := c.d.find(name)
	if x == nil || !x.active {
		return fmt.Errorf("domain %q is not running", name)
	}
	x.live = bytes.Clone(doc)
	return nil
}

// Connections returns how many connections are open.
func (c *Conn) Connections() int {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	return len(c.d.conns)
}
