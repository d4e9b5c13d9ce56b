// Package certs runs kubekms's own certificate authority for the data plane
// (and later the webhook). The CA is created once and kept in a Secret of
// the operator's namespace; every replica issues its own short-lived serving
// certificate from it, in memory, and renews it before it expires. Clients
// trust the CA, which is published to every namespace as a ConfigMap.
package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
)

const (
	// CASecretName holds the CA certificate and key.
	CASecretName = "kubekms-ca"
	// CASecretType is its fixed type.
	CASecretType corev1.SecretType = "kms.kubekms.io/ca"
	// CAConfigMapName is the ConfigMap published to every namespace.
	CAConfigMapName = "kubekms-ca.crt"
	// CAConfigMapKey is the key of the PEM bundle in it.
	CAConfigMapKey = "ca.crt"

	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 90 * 24 * time.Hour
)

// CA is a loaded certificate authority.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// LoadOrCreateCA returns the CA, creating its Secret on first start; racing
// replicas end with one CA. reader must not be a cache.
func LoadOrCreateCA(ctx context.Context, c client.Client, reader client.Reader, namespace string, now time.Time) (*CA, error) {
	key := types.NamespacedName{Namespace: namespace, Name: CASecretName}
	secret := &corev1.Secret{}
	err := reader.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		var created *corev1.Secret
		if created, err = newCASecret(key, now); err == nil {
			err = c.Create(ctx, created)
			switch {
			case err == nil:
				secret = created
			case apierrors.IsAlreadyExists(err):
				err = reader.Get(ctx, key, secret)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("load CA Secret %s: %w", key, err)
	}
	return parseCA(secret)
}

func newCASecret(key types.NamespacedName, now time.Time) (*corev1.Secret, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kubekms CA", Organization: []string{"kubekms"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: key.Name, Namespace: key.Namespace,
			Labels: map[string]string{kmsv1alpha1.ManagedByLabel: kmsv1alpha1.ManagedByValue, kmsv1alpha1.ComponentLabel: "ca"},
		},
		Type: CASecretType,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		},
	}, nil
}

func parseCA(secret *corev1.Secret) (*CA, error) {
	bad := func(what string) error {
		return fmt.Errorf("CA Secret %s/%s: %s", secret.Namespace, secret.Name, what)
	}
	if secret.Type != CASecretType {
		return nil, bad(fmt.Sprintf("type is %q, want %q", secret.Type, CASecretType))
	}
	certBlock, _ := pem.Decode(secret.Data[corev1.TLSCertKey])
	keyBlock, _ := pem.Decode(secret.Data[corev1.TLSPrivateKeyKey])
	if certBlock == nil || keyBlock == nil {
		return nil, bad("tls.crt and tls.key must be PEM")
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, bad(err.Error())
	}
	k, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, bad(err.Error())
	}
	priv, ok := k.(*ecdsa.PrivateKey)
	if !ok || !priv.PublicKey.Equal(cert.PublicKey) {
		return nil, bad("tls.key does not match tls.crt")
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(certBlock), key: priv}, nil
}

// Issuer hands out a serving certificate signed by the CA, issuing a fresh
// one when a third of the current one's lifetime is left.
type Issuer struct {
	CA       *CA
	DNSNames []string
	IPs      []net.IP
	Clock    clock.PassiveClock

	mu   sync.Mutex
	leaf *tls.Certificate
}

// GetCertificate implements tls.Config.GetCertificate.
func (i *Issuer) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	now := i.Clock.Now()
	if i.leaf != nil && now.Before(i.leaf.Leaf.NotAfter.Add(-leafValidity/3)) {
		return i.leaf, nil
	}
	leaf, err := i.issue(now)
	if err != nil {
		return nil, err
	}
	i.leaf = leaf
	return leaf, nil
}

// TLSConfig is a server configuration serving the issued certificate.
func (i *Issuer) TLSConfig() (*tls.Config, error) {
	if _, err := i.GetCertificate(nil); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: i.GetCertificate, NextProtos: []string{"h2"}}, nil
}

func (i *Issuer) issue(now time.Time) (*tls.Certificate, error) {
	if len(i.DNSNames) == 0 && len(i.IPs) == 0 {
		return nil, errors.New("a serving certificate needs at least one DNS name or IP address")
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cn := "kubekms"
	if len(i.DNSNames) > 0 {
		cn = i.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"kubekms"}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     i.DNSNames,
		IPAddresses:  i.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.CA.Cert, &priv.PublicKey, i.CA.key)
	if err != nil {
		return nil, fmt.Errorf("issue serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, i.CA.Cert.Raw}, PrivateKey: priv, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
