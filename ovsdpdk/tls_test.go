package ovsdpdk_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/offlane/offlane/ovsdpdk"
)

// pki is a throwaway CA with a server and a client certificate, as PEM files in dir.
// Like ovs-pki's, the certificates carry no host names.
type pki struct {
	CACert, ServerKey, ServerCert, ClientKey, ClientCert string
}

func newPKI(t *testing.T, dir, name string) pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := pki{CACert: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, p.CACert, "CERTIFICATE", caDER)
	leaf := func(cn string, serial int64) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		kf, cf := filepath.Join(dir, name+"-"+cn+"-key.pem"), filepath.Join(dir, name+"-"+cn+"-cert.pem")
		writePEM(t, kf, "PRIVATE KEY", kder)
		writePEM(t, cf, "CERTIFICATE", der)
		return kf, cf
	}
	p.ServerKey, p.ServerCert = leaf("server", 2)
	p.ClientKey, p.ClientCert = leaf("client", 3)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func certDER(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	return blk.Bytes
}

func TestTLSFromFiles(t *testing.T) {
	dir := t.TempDir()
	good, other := newPKI(t, dir, "good"), newPKI(t, dir, "other")
	conf, err := ovsdpdk.TLSFromFiles(good.ClientKey, good.ClientCert, good.CACert)
	if err != nil {
		t.Fatal(err)
	}
	if len(conf.Certificates) != 1 {
		t.Fatal("client certificate not loaded")
	}
	// A server certificate from our CA passes without any host name; another CA's fails.
	if err := conf.VerifyPeerCertificate([][]byte{certDER(t, good.ServerCert)}, nil); err != nil {
		t.Errorf("our CA's server certificate refused: %v", err)
	}
	if err := conf.VerifyPeerCertificate([][]byte{certDER(t, other.ServerCert)}, nil); err == nil {
		t.Error("another CA's server certificate accepted")
	}
	if err := conf.VerifyPeerCertificate(nil, nil); err == nil {
		t.Error("no certificate accepted")
	}
	if _, err := ovsdpdk.TLSFromFiles(good.ClientKey, good.ClientCert, filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("missing CA file accepted")
	}
	if _, err := ovsdpdk.TLSFromFiles(other.ClientKey, good.ClientCert, good.CACert); err == nil {
		t.Error("key not matching the certificate accepted")
	}
}
