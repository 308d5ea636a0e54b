package virt

import (
	"encoding/xml"
	"fmt"
)

// ForwardMode returns the <forward mode> of a libvirt network XML: the
// mode attribute, "nat" for a <forward> without one (libvirt's default),
// "" for a network without <forward> (isolated).
func ForwardMode(doc []byte) (string, error) {
	var n struct {
		XMLName xml.Name `xml:"network"`
		Forward *struct {
			Mode string `xml:"mode,attr"`
		} `xml:"forward"`
	}
	if err := xml.Unmarshal(doc, &n); err != nil {
		return "", fmt.Errorf("cannot parse the network XML: %w", err)
	}
	switch {
	case n.Forward == nil:
		return "", nil
	case n.Forward.Mode == "":
		return "nat", nil
	}
	return n.Forward.Mode, nil
}
