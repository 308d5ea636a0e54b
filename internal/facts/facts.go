// Package facts is the one way virtmq reads a domain from libvirt: the
// agent, `virtmq apply`, `apply --cold-boot` and `virtmq verify` all read
// through a Reader, so that they decide on the same facts.
//
// A Reader reads the XML with the flags its use needs (the definition that
// feeds a redefine with its secrets, the live XML without), parses it with
// domxml, and resolves each type network NIC's network through libvirt: a
// NIC on a hostdev or vDPA pool (<forward mode='hostdev'> or 'vdpa') is a
// passed-through device the policy leaves alone, which the domain XML
// alone does not say.
package facts

import (
	"context"
	"errors"
	"sync"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// ErrNotRunning is returned by Live when libvirt answered with a
// definition: the domain is not running (any more).
var ErrNotRunning = errors.New("domain is not running")

// ReadError is a libvirt call of a read that failed. What says what was
// read: "definition", "live XML" or "networks". Err is libvirt's error
// (with the virt sentinels: virt.ErrNotFound, virt.ErrCallTimeout, ...).
type ReadError struct {
	What string
	Err  error
}

func (e *ReadError) Error() string {
	return "failed to read the " + e.What + " of the domain: " + e.Err.Error()
}

func (e *ReadError) Unwrap() error { return e.Err }

// Definition is a persistent domain's definition, read to be redefined.
type Definition struct {
	// Doc is the XML as libvirt returned it, secrets included: never log,
	// print or put it into an error; what DefineXML is given must come
	// from it (domxml.ApplyTo).
	Doc []byte
	// Facts is Doc parsed, its networks resolved.
	Facts *policy.Domain
}

// Reader reads domains on one connection. It caches each network's forward
// mode until Forget: networks rarely change, and libvirt sends no event
// virtmq listens to when they do. It is safe for concurrent use.
type Reader struct {
	conn virt.Reader

	mu       sync.Mutex
	networks map[string]string // network name → forward mode ("" for unknown networks too)
}

// NewReader returns a Reader on conn with an empty network cache.
func NewReader(conn virt.Reader) *Reader {
	return &Reader{conn: conn, networks: map[string]string{}}
}

// Forget empties the network cache: the next reads ask libvirt again.
func (r *Reader) Forget() {
	r.mu.Lock()
	r.networks = map[string]string{}
	r.mu.Unlock()
}

// Definition reads d's persistent definition with its secrets
// (XMLInactive|XMLSecure: redefining from XML without them would delete
// console passwords) and parses it. A failed libvirt call is a *ReadError;
// any other error is the document's (it does not parse).
func (r *Reader) Definition(ctx context.Context, d virt.Domain) (Definition, error) {
	doc, err := r.DefinitionXML(ctx, d)
	if err != nil {
		return Definition{}, err
	}
	dom, err := r.Parse(ctx, doc)
	if err != nil {
		return Definition{}, err
	}
	return Definition{Doc: doc, Facts: dom}, nil
}

// DefinitionXML is the read of Definition without the parse, for a caller
// that knows what it decided on the same bytes before.
func (r *Reader) DefinitionXML(ctx context.Context, d virt.Domain) ([]byte, error) {
	doc, err := r.conn.DomainXML(ctx, d, virt.XMLInactive|virt.XMLSecure)
	if err != nil {
		return nil, &ReadError{What: "definition", Err: err}
	}
	return doc, nil
}

// Parse is the parse of Definition: doc's facts, networks resolved.
func (r *Reader) Parse(ctx context.Context, doc []byte) (*policy.Domain, error) {
	dom, err := domxml.Parse(doc)
	if err != nil {
		return nil, err
	}
	if err := r.resolve(ctx, dom); err != nil {
		return nil, err
	}
	return dom, nil
}

// Live reads the running domain d's live XML, without secrets (nothing is
// redefined from it), and parses it. When libvirt returned a definition
// instead (d stopped meanwhile) it returns the facts and ErrNotRunning,
// its networks not resolved. A failed libvirt call is a *ReadError; any
// other error is the document's.
func (r *Reader) Live(ctx context.Context, d virt.Domain) (*policy.Domain, error) {
	doc, err := r.conn.DomainXML(ctx, d, virt.XMLLive)
	if err != nil {
		return nil, &ReadError{What: "live XML", Err: err}
	}
	dom, err := domxml.Parse(doc)
	if err != nil {
		return nil, err
	}
	if !running(dom) {
		return dom, ErrNotRunning
	}
	if err := r.resolve(ctx, dom); err != nil {
		return nil, err
	}
	return dom, nil
}

// running reports whether a domain XML libvirt returned as live really
// describes a running domain: libvirt gives every device of a running
// domain an alias, and returns the definition instead when the domain is
// not running (any more).
func running(d *policy.Domain) bool {
	for _, ifc := range d.Interfaces {
		if ifc.Alias == "" {
			return false
		}
	}
	return true
}

// resolve sets Interface.NetworkForward of dom's type network NICs. A
// network libvirt does not know (the domain will not start until it
// exists) is decided like any type network NIC, as the hook does. Any
// other failure is a *ReadError.
func (r *Reader) resolve(ctx context.Context, dom *policy.Domain) error {
	for i := range dom.Interfaces {
		ifc := &dom.Interfaces[i]
		if ifc.Type != "network" || ifc.Network == "" {
			continue
		}
		r.mu.Lock()
		mode, ok := r.networks[ifc.Network]
		r.mu.Unlock()
		if !ok {
			var err error
			mode, err = r.conn.NetworkForward(ctx, ifc.Network)
			if err != nil && !errors.Is(err, virt.ErrNoNetwork) {
				return &ReadError{What: "networks", Err: err}
			}
			r.mu.Lock()
			r.networks[ifc.Network] = mode
			r.mu.Unlock()
		}
		ifc.NetworkForward = mode
	}
	return nil
}
