package virttest

import (
	"bytes"
	_ "embed"
)

//go:embed testdata/graphics-passwd.xml
var graphicsPasswd []byte

// GraphicsPasswdXML returns a persistent definition with console
// passwords, laid out as libvirt 9.0 formats an inactive definition with
// VIR_DOMAIN_XML_SECURE: domain "console", 4 vCPUs, one virtio NIC
// (52:54:00:c0:45:01) without a queue count, a VNC <graphics> with passwd
// and passwdValidTo and a SPICE <graphics> with passwd and connected. The
// passwords are GraphicsPasswords.
func GraphicsPasswdXML() []byte { return bytes.Clone(graphicsPasswd) }

// GraphicsPasswords are the passwd attributes of GraphicsPasswdXML as they
// appear in the XML text (the SPICE one holds escaped characters), for
// tests that check they survive a redefine or are never printed.
var GraphicsPasswords = []string{`passwd='vnc-Pa55'`, `passwd='sp1ce&amp;&apos;s3cret'`}
