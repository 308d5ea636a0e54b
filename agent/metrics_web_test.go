package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, written as PEM files in dir.
type testPKI struct {
	caFile, serverCert, serverKey string
	pool                          *x509.CertPool
	client                        tls.Certificate
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "virtmq test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	srvDER, srvKey := leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	cliDER, cliKey := leaf(3, "prometheus", x509.ExtKeyUsageClientAuth)
	p := testPKI{
		caFile:     write("ca.crt", "CERTIFICATE", caDER),
		serverCert: write("server.crt", "CERTIFICATE", srvDER),
		serverKey:  write("server.key", "EC PRIVATE KEY", keyDER(srvKey)),
		pool:       x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	return p
}

// freeAddr returns a loopback address no one listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestMetricsWebConfig: with a web config the metrics endpoint serves
// TLS and refuses a scrape without the basic auth credentials or, when
// the config asks for one, without a client certificate the CA signed.
func TestMetricsWebConfig(t *testing.T) {
	dir := shortDir(t)
	pki := newTestPKI(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, config string
		clientCert   bool
	}{
		{"tls and basic auth", "tls_server_config:\n  cert_file: " + pki.serverCert + "\n  key_file: " + pki.serverKey + "\n" +
			"basic_auth_users:\n  prometheus: " + string(hash) + "\n", false},
		{"client certificates and basic auth", "tls_server_config:\n  cert_file: " + pki.serverCert + "\n  key_file: " + pki.serverKey + "\n" +
			"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: " + pki.caFile + "\n" +
			"basic_auth_users:\n  prometheus: " + string(hash) + "\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.cfg.MetricsWebConfig = filepath.Join(dir, "web.yml")
			if err := os.WriteFile(h.cfg.MetricsWebConfig, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			addr := freeAddr(t)
			h.cfg.MetricsListen = addr
			h.start()

			scrape := func(scheme string, cert bool, user, pass string) (int, string, error) {
				tc := &tls.Config{RootCAs: pki.pool}
				if cert {
					tc.Certificates = []tls.Certificate{pki.client}
				}
				c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
				req, _ := http.NewRequestWithContext(context.Background(), "GET", scheme+"://"+addr+"/metrics", nil)
				if user != "" {
					req.SetBasicAuth(user, pass)
				}
				resp, err := c.Do(req)
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), nil
			}
			if code, body, err := scrape("https", tt.clientCert, "prometheus", "s3cret"); err != nil || code != 200 || !strings.Contains(body, "virtmq_build_info{") {
				t.Errorf("scrape with credentials: %d %v\n%.200s", code, err, body)
			}
			if code, _, err := scrape("https", tt.clientCert, "", ""); err != nil || code != http.StatusUnauthorized {
				t.Errorf("scrape without credentials: %d %v, want 401", code, err)
			}
			if code, _, err := scrape("https", tt.clientCert, "prometheus", "wrong"); err != nil || code != http.StatusUnauthorized {
				t.Errorf("scrape with a wrong password: %d %v, want 401", code, err)
			}
			if code, body, err := scrape("http", false, "prometheus", "s3cret"); err == nil && code == 200 {
				t.Errorf("a plain HTTP scrape got the metrics:\n%.200s", body)
			}
			if tt.clientCert {
				if code, _, err := scrape("https", false, "prometheus", "s3cret"); err == nil {
					t.Errorf("scrape without a client certificate: %d, want the handshake refused", code)
				}
			}
		})
	}
}

// TestMetricsWebConfigInvalid: a web config that does not load stops
// the start instead of serving the metrics in plain HTTP, and so does one
// without a metrics address.
func TestMetricsWebConfigInvalid(t *testing.T) {
	dir := shortDir(t)
	for _, tt := range []struct{ name, config, listen, want string }{
		{"missing key file", "tls_server_config:\n  cert_file: " + filepath.Join(dir, "none.crt") + "\n  key_file: " + filepath.Join(dir, "none.key") + "\n",
			"127.0.0.1:0", "metrics web config"},
		{"unknown key", "tls_server_config:\n  cert_fil: x\n", "127.0.0.1:0", "cert_fil"},
		{"plain-text password", "basic_auth_users:\n  prometheus: s3cret\n", "127.0.0.1:0", "metrics web config"},
		{"no metrics address", "basic_auth_users: {}\n", "", "needs a metrics address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.cfg.MetricsWebConfig = filepath.Join(dir, "web.yml")
			if err := os.WriteFile(h.cfg.MetricsWebConfig, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			h.cfg.MetricsListen = tt.listen
			a, err := New(h.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
