// Package testca makes throwaway certificate authorities and server certificates for tests:
// ECDSA P-256 keys made at test time, never written anywhere but a test's temporary directory.
// It lets tests run the hub over real TLS with nothing installed and no certificate checked in.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority that lives for one test run.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte // the CA certificate, PEM: what an agent's tls.ca_file holds
}

// Leaf is a server certificate issued by a CA, with its private key.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte // the certificate, PEM: what the hub's tls.cert_file holds
	KeyPEM  []byte // the private key, PEM (PKCS #8): what the hub's tls.key_file holds
}

// New makes a CA named name, valid from an hour ago for a day.
func New(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"loyalty tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// MustNew is New for tests: it fails tb on error.
func MustNew(tb testing.TB, name string) *CA {
	tb.Helper()
	ca, err := New(name)
	if err != nil {
		tb.Fatalf("testca: new CA: %v", err)
	}
	return ca
}

// Pool returns a pool holding only this CA, for a client's RootCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteCert writes the CA certificate (PEM) to path.
func (ca *CA) WriteCert(path string) error { return writeAtomic(path, ca.CertPEM, 0o644) }

// Issue makes a server certificate for hosts (DNS names or IP addresses), valid from an hour ago
// for a day. With no hosts it is issued for localhost, 127.0.0.1 and ::1.
func (ca *CA) Issue(hosts ...string) (*Leaf, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"loyalty tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}, nil
}

// MustIssue is Issue for tests: it fails tb on error.
func (ca *CA) MustIssue(tb testing.TB, hosts ...string) *Leaf {
	tb.Helper()
	l, err := ca.Issue(hosts...)
	if err != nil {
		tb.Fatalf("testca: issue a certificate: %v", err)
	}
	return l
}

// Write writes the certificate and the key to certPath and keyPath, each replaced atomically
// (written beside, then renamed over), key first: a reader never sees half a file.
func (l *Leaf) Write(certPath, keyPath string) error {
	if err := writeAtomic(keyPath, l.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(certPath, l.CertPEM, 0o644)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".testca-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("testca: %w", err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}
