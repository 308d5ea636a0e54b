// Package virt is virtmq's boundary to libvirt: the few calls the agent and
// the CLI make, as a small interface, with a go-libvirt implementation
// (pure Go RPC over the libvirt unix socket) and a fake in virttest.
package virt

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a domain does not exist (any more).
var ErrNotFound = errors.New("domain not found")

// ErrNoNetwork is returned when a libvirt network does not exist.
var ErrNoNetwork = errors.New("network not found")

// ErrDisconnected is returned by calls on a connection libvirt has closed.
var ErrDisconnected = errors.New("libvirt connection lost")

// ErrAgentUnavailable is returned by AgentCommand when the domain's
// qemu-guest-agent is not connected (not installed, not started yet, or
// the domain has no agent channel).
var ErrAgentUnavailable = errors.New("guest agent is not connected")

// ErrTimeout is returned by AgentCommand when the guest agent did not answer
// in time.
var ErrTimeout = errors.New("guest agent command timed out")

// ErrCallTimeout is returned when a libvirt call timed out: libvirt gave up
// waiting (VIR_ERR_OPERATION_TIMEOUT, e.g. "cannot acquire state change
// lock"), or the caller's deadline passed first. The call may still have
// taken effect: go-libvirt calls cannot be cancelled, so a define that timed
// out on the client can land afterwards. Read again before deciding.
var ErrCallTimeout = errors.New("libvirt call timed out")

// ErrInvalidDefinition is returned by DefineXML when libvirt refused the
// XML itself (parse, schema validation, unsupported configuration): the
// same XML fails again, so retrying it is pointless.
var ErrInvalidDefinition = errors.New("libvirt refused the definition")

// ErrInvalidState is returned by StartDomain, ShutdownDomain and DestroyDomain when the
// domain is not in a state the operation applies to
// (VIR_ERR_OPERATION_INVALID: "domain is already running", "domain is not
// running").
var ErrInvalidState = errors.New("operation not valid in the domain's state")

// AgentError is the guest agent's error reply to a command, as libvirt
// reports it ("unable to execute QEMU agent command 'NAME': DESC"): the
// agent is there but refused or failed the command.
type AgentError struct {
	// Command is the agent command, e.g. "guest-exec".
	Command string
	// Desc is the agent's message: guest text, untrusted.
	Desc string
	// Err is the error as libvirt returned it.
	Err error
}

// Error returns libvirt's message.
func (e *AgentError) Error() string { return e.Err.Error() }

// Unwrap returns libvirt's error.
func (e *AgentError) Unwrap() error { return e.Err }

// Domain identifies a libvirt domain and its state.
type Domain struct {
	Name string
	UUID string // canonical 8-4-4-4-12 text form
	// Persistent is false for transient domains (virsh create): their
	// definition cannot be rewritten.
	Persistent bool
	// Active reports whether the domain is running (or paused).
	Active bool
}

// EventKind is the kind of a domain event the agent reacts to.
type EventKind int

// Event kinds.
const (
	EventOther             EventKind = iota
	EventDefined                     // defined or updated (lifecycle DEFINED)
	EventUndefined                   // undefined
	EventStarted                     // started, resumed from save/restore/migration
	EventStopped                     // shut off, destroyed, crashed
	EventAgentConnected              // qemu-guest-agent channel connected (after every boot and reboot)
	EventAgentDisconnected           // qemu-guest-agent channel disconnected
	// EventDeviceAdded: a device was hot-plugged into a running domain
	// (DEVICE_ADDED; Event.Alias names it). libvirt 9.0 sends it, and no
	// DEFINED, for "virsh attach-interface --live --config" too; a
	// "--config"-only attach and "setvcpus" send no event at all.
	EventDeviceAdded
	EventRebooted // the guest was reset (VIR_DOMAIN_EVENT_ID_REBOOT): a guest or virsh reboot
	// EventMetadataChanged: a <metadata> element changed through the
	// metadata API (virDomainSetMetadata, e.g. `virtmq exclude`); libvirt
	// sends no DEFINED for it. Event.Namespace names the element's
	// namespace when libvirt says it.
	EventMetadataChanged
)

// String returns the kind's name, for logs.
func (k EventKind) String() string {
	switch k {
	case EventDefined:
		return "defined"
	case EventUndefined:
		return "undefined"
	case EventStarted:
		return "started"
	case EventStopped:
		return "stopped"
	case EventAgentConnected:
		return "agent-connected"
	case EventAgentDisconnected:
		return "agent-disconnected"
	case EventDeviceAdded:
		return "device-added"
	case EventRebooted:
		return "rebooted"
	case EventMetadataChanged:
		return "metadata-changed"
	}
	return "other"
}

// Event is one domain event.
type Event struct {
	Kind   EventKind
	Domain Domain // Name and UUID are set; Persistent/Active are not reliable: look the domain up
	// Detail is libvirt's event detail number, for logging.
	Detail int
	// Namespace is the namespace URI of the changed element, for
	// EventMetadataChanged; empty otherwise.
	Namespace string
	// Alias is the device alias of EventDeviceAdded ("net1").
	Alias string
}

// XMLFlags selects what DomainXML returns. They combine with |.
type XMLFlags uint

const (
	// XMLLive asks for the live XML of a running domain (for a domain that
	// is not running libvirt returns its definition). It is the zero value:
	// no flag.
	XMLLive XMLFlags = 0
	// XMLInactive asks for the persistent definition, what DefineXML
	// would be given back (VIR_DOMAIN_XML_INACTIVE).
	XMLInactive XMLFlags = 1 << iota
	// XMLSecure asks for secrets too (VIR_DOMAIN_XML_SECURE): the passwd
	// attribute of VNC and SPICE <graphics>. It needs a read-write
	// connection. Ask for it only to redefine, and never log or print what
	// it returns.
	XMLSecure
)

// Conn is one connection to libvirt's QEMU driver: every role below.
// All calls honour ctx; none retries: reconnecting is the caller's job.
// Users take the roles they need (the agent's reads take a Reader, the
// guest step a Guest), so that a fake or a wrapper implements only those.
type Conn interface {
	Reader
	Definer
	Guest
	Power
	// Capabilities returns the host's capabilities XML
	// (virConnectGetCapabilities). libvirt answers it from its QEMU
	// capability cache, and probes QEMU again (seconds) when the cache is
	// invalid: timing it tells whether libvirt is healthy.
	Capabilities(ctx context.Context) ([]byte, error)
	// Events streams lifecycle, guest-agent, device-added, reboot and
	// metadata-change events until ctx ends or the connection drops (then
	// the channel is closed).
	Events(ctx context.Context) (<-chan Event, error)
	// Disconnected is closed when the connection is lost.
	Disconnected() <-chan struct{}
	// Close ends the connection.
	Close() error
}

// Reader finds domains and reads them, and the networks their NICs use.
type Reader interface {
	// ListDomains returns every domain, active and inactive, persistent and transient.
	ListDomains(ctx context.Context) ([]Domain, error)
	// LookupDomain finds a domain by name or UUID.
	LookupDomain(ctx context.Context, nameOrUUID string) (Domain, error)
	// DomainXML returns the domain's XML as flags select: the live XML
	// (XMLLive) or the persistent definition (XMLInactive), with secrets
	// only when XMLSecure is given.
	//
	// Without XMLSecure libvirt leaves secrets out (the passwd of VNC and
	// SPICE <graphics>): such XML is fine for looking at, but redefining
	// from it deletes the passwords. Every read that feeds DefineXML must
	// ask for XMLInactive|XMLSecure; every other read must not ask for
	// XMLSecure. XML read with XMLSecure must never be logged, printed or
	// put into an error or a status message.
	DomainXML(ctx context.Context, d Domain, flags XMLFlags) ([]byte, error)
	// NetworkForward returns the <forward mode> of the libvirt network
	// name (virNetworkLookupByName + virNetworkGetXMLDesc): the running
	// network's when it is active, else its definition's. A <forward>
	// without mode is "nat"; a network without <forward> (isolated) gives
	// "". It fails with ErrNoNetwork when there is no such network.
	NetworkForward(ctx context.Context, name string) (string, error)
}

// Definer changes persistent definitions.
type Definer interface {
	// DefineXML defines (or redefines) a persistent domain, asking libvirt to
	// validate the XML against its schema. XML libvirt refuses gives
	// ErrInvalidDefinition; a timeout (ErrCallTimeout or ctx's deadline)
	// says nothing about whether the definition landed.
	DefineXML(ctx context.Context, xml []byte) error
	// SetMetadata sets the domain's <metadata> element in namespace ns to
	// element, written with the namespace prefix key; an empty element
	// removes it (virDomainSetMetadata with VIR_DOMAIN_METADATA_ELEMENT).
	// It changes the persistent definition of a persistent domain and the
	// live XML of a running one, without a redefine: libvirt emits
	// EventMetadataChanged, not EventDefined. d must come from
	// LookupDomain or ListDomains (Persistent and Active pick the flags).
	SetMetadata(ctx context.Context, d Domain, ns, key, element string) error
}

// Guest talks to a running domain's guest agent and QEMU.
type Guest interface {
	// AgentCommand sends a raw qemu-guest-agent command (virDomainQemuAgentCommand).
	AgentCommand(ctx context.Context, d Domain, cmd []byte, timeout time.Duration) ([]byte, error)
	// MonitorCommand sends a raw QMP command (virDomainQemuMonitorCommand);
	// it taints the domain "custom-monitor", so virtmq uses it to verify only.
	MonitorCommand(ctx context.Context, d Domain, cmd []byte) ([]byte, error)
}
