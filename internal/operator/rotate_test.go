package operator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/dataplane"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/seal"
	"github.com/kubekms/kubekms/internal/testenv"
)

// replica is one manager started by a test: it stops with stop.
type replica struct {
	op   *operator.Operator
	addr string
	stop func()
}

// startReplica starts a manager on env: with controllers when controllers
// is set, with a data plane on loopback when dataPlane is.
func startReplica(t *testing.T, env *testenv.Env, controllers, dataPlane bool, rootCheck time.Duration) *replica {
	t.Helper()
	return startReplicaWith(t, env, operator.Options{}, controllers, dataPlane, rootCheck)
}

// startReplicaWith is startReplica with opts' root of trust.
func startReplicaWith(t *testing.T, env *testenv.Env, opts operator.Options, controllers, dataPlane bool, rootCheck time.Duration) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts.Namespace, opts.SeveralPerProcess, opts.RootCheckInterval = testenv.OperatorNamespace, true, rootCheck
	opts.Serving = operator.Serving{IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	if controllers {
		opts.Controllers = &operator.ControllerOptions{}
	}
	listening := make(chan net.Addr, 1)
	if dataPlane {
		opts.DataPlane = &dataplane.Config{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), UsageInterval: -1, Listening: listening}
	}
	op, err := operator.New(ctx, env.Config, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- op.Start(ctx) }()
	r := &replica{op: op}
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stop)
	if dataPlane {
		r.addr = (<-listening).String()
	}
	return r
}

func (r *replica) client(t *testing.T) kmsv1.KeyManagementServiceClient {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(r.op.CA.Cert)
	cc, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return kmsv1.NewKeyManagementServiceClient(cc)
}

// requestRootRotation sets the RootOfTrust's spec.rotationRequest, once the
// manager has created the object.
func requestRootRotation(t *testing.T, c client.Client, request string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rot := &kmsv1alpha1.RootOfTrust{}
		err := c.Get(ctx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: kmsv1alpha1.RootOfTrustName}, rot)
		if err == nil {
			patch := client.MergeFrom(rot.DeepCopy())
			rot.Spec.RotationRequest = request
			if err = c.Patch(ctx, rot, patch); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("set spec.rotationRequest: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitResealed waits until the RootOfTrust reports root key version
// version (0: any), alone, having answered request, with every sealed Secret resealed under it.
func waitResealed(t *testing.T, c client.Client, version int32, request string) *kmsv1alpha1.RootOfTrust {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rot := &kmsv1alpha1.RootOfTrust{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: kmsv1alpha1.RootOfTrustName}, rot); err == nil &&
			rot.Status.ObservedRotationRequest == request &&
			(rot.Status.RootKeyVersion == version || version == 0 && rot.Status.RootKeyVersion > 0) && rot.Status.RootKeyVersions == 1 && rot.Status.ResealPending == 0 &&
			meta.IsStatusConditionTrue(rot.Status.Conditions, kmsv1alpha1.RootOfTrustConditionResealed) {
			return rot
		}
		if time.Now().After(deadline) {
			t.Fatalf("RootOfTrust did not reach root key version %d alone, resealed: %+v", version, rot.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rootKeyVersions lists the data entries of the local root key Secret.
func rootKeyVersions(t *testing.T, c client.Client) []string {
	t.Helper()
	secret := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: seal.RootKeySecretName}, secret); err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range secret.Data {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Root key rotation local v1 → v2 while a load generator decrypts old
// ciphertexts through two replicas: the leader, which rotates and reseals,
// and one that never checks its root on its own (its root check interval is
// an hour) and has never loaded the keys, so every decrypt it answers
// unseals a version after the reseal began. No call fails; afterwards the
// old root key version is gone from the root key Secret, every sealed
// Secret is sealed under version 2, and a replica started then decrypts
// everything.
func TestRootKeyRotationUnderLoad(t *testing.T) {
	ctx := context.Background()
	env := startEnv(t)
	c := env.Client
	leader := startReplica(t, env, true, true, 200*time.Millisecond)
	follower := startReplica(t, env, false, true, time.Hour)

	const keys = 12
	samples, actx := keysAndCiphertexts(t, env, leader.client(t), keys)
	if got := rootKeyVersions(t, c); !slices.Equal(got, []string{"root-key-v1"}) {
		t.Fatalf("root key Secret holds %v before the rotation, want root-key-v1", got)
	}

	// The load: old ciphertexts, decrypted without pause through both
	// replicas until the old root key version is retired.
	calls, failed, firstErr, stop := decryptLoad(actx, []kmsv1.KeyManagementServiceClient{leader.client(t), follower.client(t)}, samples)
	time.Sleep(200 * time.Millisecond)
	rotatedAt := time.Now().Add(-time.Second) // Event times are in microseconds
	requestRootRotation(t, c, "2026-12-02")
	rot := waitResealed(t, c, 2, "2026-12-02")
	stop()
	if failed.Load() != 0 || calls.Load() == 0 {
		t.Fatalf("%d of %d decrypts failed during the root key rotation, first: %v", failed.Load(), calls.Load(), firstErr.Load())
	}
	t.Logf("%d decrypts during the rotation, none failed; %d sealed Secrets resealed", calls.Load(), rot.Status.SealedSecrets)
	if rot.Status.SealedSecrets < keys || rot.Status.ObservedRotationRequest != "2026-12-02" {
		t.Fatalf("status %+v: want at least %d sealed Secrets and the request observed", rot.Status, keys)
	}
	if got := rootKeyVersions(t, c); !slices.Equal(got, []string{"root-key-v2"}) {
		t.Fatalf("root key Secret holds %v after the rotation, want root-key-v2 alone", got)
	}
	assertSealedUnderRootVersion(t, c, 2)

	// Events for people: rotated, resealed, retired.
	var reasons []string
	list := &eventsv1.EventList{}
	if err := c.List(ctx, list, client.InNamespace(testenv.OperatorNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == "RootOfTrust" && e.EventTime.After(rotatedAt) {
			reasons = append(reasons, e.Reason)
		}
	}
	for _, want := range []string{"RootKeyRotated", "Resealed", "RootKeyRetired"} {
		if !slices.Contains(reasons, want) {
			t.Errorf("no %s Event on the RootOfTrust (have %v)", want, reasons)
		}
	}

	// A replica started now, with root key version 1 gone, decrypts all.
	fresh := startReplica(t, env, false, true, time.Hour).client(t)
	for _, s := range samples {
		out, err := fresh.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: s.ct})
		if err != nil || string(out.Plaintext) != s.pt {
			t.Fatalf("Decrypt through a replica started after the rotation = %v, %v; want %q", out, err, s.pt)
		}
	}

	// The same request again makes nothing; a new one makes version 3.
	requestRootRotation(t, c, "2026-12-02")
	time.Sleep(time.Second)
	if got := rootKeyVersions(t, c); !slices.Equal(got, []string{"root-key-v2"}) {
		t.Fatalf("the same rotation request again left %v, want root-key-v2 alone", got)
	}
	requestRootRotation(t, c, "second")
	waitResealed(t, c, 3, "second")
	assertSealedUnderRootVersion(t, c, 3)
}

// assertSealedUnderRootVersion checks that every sealed Secret of the
// operator namespace, and the root check, is sealed by local under root key
// version v: in its data, with no resealed annotation, when it is mutable;
// in its resealed annotation when it is immutable (written by a release
// before root rotation), whose data keeps the old blob.
func assertSealedUnderRootVersion(t *testing.T, c client.Client, v uint32) {
	t.Helper()
	secrets := &corev1.SecretList{}
	if err := c.List(context.Background(), secrets, client.InNamespace(testenv.OperatorNamespace)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range secrets.Items {
		if s.Type != seal.SealedSecretType && s.Type != seal.RootCheckSecretType {
			continue
		}
		n++
		blob, provider, err := seal.SealedBlob(&s, "sealed", "sealer")
		if err != nil || provider != seal.LocalProvider || len(blob) < 5 || binary.BigEndian.Uint32(blob[1:5]) != v {
			t.Fatalf("Secret %s: sealed by %q, %v; want local root key version %d", s.Name, provider, err, v)
		}
		_, annotated := s.Annotations[seal.AnnotationResealed]
		if immutable := s.Immutable != nil && *s.Immutable; annotated != immutable {
			t.Fatalf("Secret %s: immutable %t but resealed annotation %t: want the annotation exactly on immutable Secrets", s.Name, immutable, annotated)
		}
	}
	if n == 0 {
		t.Fatal("no sealed Secret found")
	}
}

// A root key rotation interrupted by a restart at random points (before the
// new version is written, between two resealed Secrets, before the old
// version is retired) leaves every version of every key readable, with the
// same material, under a root loaded afresh from the API server; a manager
// started last finishes the job, and each request made at most one version.
func TestRootKeyRotationSurvivesRestarts(t *testing.T) {
	ctx := context.Background()
	env := startEnv(t)
	c := env.Client

	// Sealed material written as the keystore writes it, under the root
	// key a first manager created; 80 versions make a reseal long enough
	// to be cut.
	first := startReplica(t, env, true, false, 100*time.Millisecond)
	waitResealed(t, c, 1, "")
	first.stop()
	root, err := seal.LoadLocal(ctx, c, testenv.OperatorNamespace)
	if err != nil {
		t.Fatal(err)
	}
	store := &keystore.Store{Client: c, Reader: c, Namespace: testenv.OperatorNamespace, Sealer: root}
	type version struct {
		owner    keystore.Owner
		version  int32
		material []byte
	}
	var versions []version
	for i := range 40 {
		owner := keystore.Owner{Namespace: "default", Name: fmt.Sprintf("k%d", i), KeyID: fmt.Sprintf("%032x", i+1), KeySpec: string(kmsv1alpha1.KeySpecSymmetricDefault)}
		for v := int32(1); v <= 2; v++ {
			m := make([]byte, 32)
			_, _ = rand.Read(m)
			if ok, err := store.Create(ctx, owner, v, m, nil, time.Now(), ""); err != nil || !ok {
				t.Fatalf("store version: %v %v", ok, err)
			}
			versions = append(versions, version{owner, v, m})
		}
	}
	// Five versions as a release before root rotation wrote them:
	// immutable, so resealed into annotations.
	legacy := map[string]bool{}
	for _, v := range versions[:5] {
		name := keystore.SecretName(v.owner.KeyID, v.version)
		makeImmutable(t, c, name)
		legacy[name] = true
	}
	readable := func(when string) {
		t.Helper()
		s, err := seal.LoadLocal(ctx, c, testenv.OperatorNamespace)
		if err != nil {
			t.Fatalf("%s: load the root afresh: %v", when, err)
		}
		fresh := &keystore.Store{Client: c, Reader: c, Namespace: testenv.OperatorNamespace, Sealer: s}
		for _, v := range versions {
			m, err := fresh.Load(ctx, v.owner.KeyID, v.version, v.owner.KeySpec)
			if err != nil || !bytes.Equal(m, v.material) {
				t.Fatalf("%s: key %s version %d: %v (material equal: %t)", when, v.owner.KeyID, v.version, err, bytes.Equal(m, v.material))
			}
		}
		if err := seal.VerifyRoot(ctx, c, c, testenv.OperatorNamespace, s, nil, nil); err != nil {
			t.Fatalf("%s: root check: %v", when, err)
		}
	}
	readable("before any rotation")

	// Each cycle: a new request, a manager, a stop at a random moment.
	const cycles = 6
	for i := range cycles {
		requestRootRotation(t, c, fmt.Sprintf("r%d", i))
		r := startReplica(t, env, true, false, 100*time.Millisecond)
		// A manager here answers within about a second of its start.
		time.Sleep(300*time.Millisecond + time.Duration(mrand.IntN(1200))*time.Millisecond)
		r.stop()
		readable(fmt.Sprintf("after stop %d", i))
		rot := &kmsv1alpha1.RootOfTrust{}
		_ = c.Get(ctx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: kmsv1alpha1.RootOfTrustName}, rot)
		t.Logf("stop %d: root key Secret %v, status answered %q, %d of %d pending", i, rootKeyVersions(t, c),
			rot.Status.ObservedRotationRequest, rot.Status.ResealPending, rot.Status.SealedSecrets)
	}
	startReplica(t, env, true, false, 100*time.Millisecond)
	rot := waitResealed(t, c, 0, fmt.Sprintf("r%d", cycles-1))
	if v := rot.Status.RootKeyVersion; v < 2 || v > 1+cycles || rot.Status.ObservedRotationRequest != fmt.Sprintf("r%d", cycles-1) {
		t.Fatalf("after %d rotation requests the root key version is %d (request %q observed); want the last request answered, one version at most per request",
			cycles, v, rot.Status.ObservedRotationRequest)
	}
	if got := rootKeyVersions(t, c); len(got) != 1 {
		t.Fatalf("root key Secret holds %v at the end, want the current version alone", got)
	}
	assertSealedUnderRootVersion(t, c, uint32(rot.Status.RootKeyVersion))
	readable("at the end")

	// Someone who may patch Secrets here writes resealed annotations that
	// do not unseal (garbage, another provider, a valid header over
	// nothing) on the root check and on Secrets whose data holds the
	// current blob: no version becomes unreadable, the root check still
	// proves the root, and the next reseal takes the annotations away.
	// (On an immutable Secret whose old root key is retired, the
	// annotation is the only copy: patching it destroys that version, as
	// patching the root key Secret destroys all. docs/root-of-trust.md.)
	forge := map[string]string{
		seal.RootCheckSecretName:                         `{"metadata":{"annotations":{"kms.kubekms.io/resealed":"AAAA","kms.kubekms.io/resealed-by":"awskms"}}}`,
		keystore.SecretName(versions[10].owner.KeyID, 1): `{"metadata":{"annotations":{"kms.kubekms.io/resealed":"%s","kms.kubekms.io/resealed-by":"local"}}}`,
		keystore.SecretName(versions[30].owner.KeyID, 1): `{"metadata":{"annotations":{"kms.kubekms.io/resealed":"%s"}}}`,
		keystore.SecretName(versions[20].owner.KeyID, 2): `{"metadata":{"annotations":{"kms.kubekms.io/resealed-by":"pkcs11"}}}`,
	}
	header := make([]byte, 5+28)
	header[0] = 1
	binary.BigEndian.PutUint32(header[1:5], uint32(rot.Status.RootKeyVersion))
	for name, patch := range forge {
		if strings.Contains(patch, "%s") {
			patch = fmt.Sprintf(patch, base64.StdEncoding.EncodeToString(header))
		}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: name}}
		if err := c.Patch(ctx, secret, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatalf("forge %s: %v", name, err)
		}
	}
	readable("with forged annotations")
	requestRootRotation(t, c, "after forgery")
	rot = waitResealed(t, c, rot.Status.RootKeyVersion+1, "after forgery")
	readable("after the forgery was resealed over")
	for name := range forge {
		secret := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: name}, secret); err != nil {
			t.Fatal(err)
		}
		if _, annotated := secret.Annotations[seal.AnnotationResealed]; annotated != legacy[name] {
			t.Fatalf("Secret %s after the reseal: resealed annotation %t, want %t", name, annotated, legacy[name])
		}
	}

	// Retiring over a version other than the current one is refused.
	current := uint32(rot.Status.RootKeyVersion)
	if _, _, err := seal.RotateLocal(ctx, c, c, testenv.OperatorNamespace, "by hand", rand.Reader, time.Now()); err != nil {
		t.Fatal(err)
	}
	if retired, err := seal.RetireLocal(ctx, c, c, testenv.OperatorNamespace, current); err == nil || len(retired) > 0 {
		t.Fatalf("RetireLocal keeping version %d after a rotation to %d = %v, %v; want refused", current, current+1, retired, err)
	}
	if got := rootKeyVersions(t, c); len(got) != 2 {
		t.Fatalf("root key Secret holds %v, want both versions kept", got)
	}
	readable("after a refused retire")
}

// Migration local → file while a load generator decrypts old ciphertexts:
// the manager restarted with --root-of-trust file and
// --previous-root-of-trust local serves every decrypt (0 failures) while
// its leader reseals everything under the file root, then says nothing
// needs the local root any more. The root key Secret is deleted, a manager
// with the file root alone decrypts everything and rotates a key.
func TestRootOfTrustMigrationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	k := make([]byte, seal.RootKeySize)
	_, _ = rand.Read(k)
	if err := os.WriteFile(filepath.Join(dir, "root-key-v1"), k, 0o400); err != nil {
		t.Fatal(err)
	}
	migrateUnderLoad(t, operator.Options{RootOfTrust: operator.RootOfTrustFile, RootKeyPath: dir})
}

// migrateUnderLoad migrates from local to target's root of trust (see
// TestRootOfTrustMigrationUnderLoad).
func migrateUnderLoad(t *testing.T, target operator.Options) {
	ctx := context.Background()
	env := startEnv(t)
	c := env.Client
	local := startReplica(t, env, true, true, 200*time.Millisecond)
	samples, actx := keysAndCiphertexts(t, env, local.client(t), 8)
	local.stop()
	// As a release before root rotation wrote them: immutable.
	secrets := &corev1.SecretList{}
	if err := c.List(ctx, secrets, client.InNamespace(testenv.OperatorNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if s.Type == seal.SealedSecretType || s.Type == seal.RootCheckSecretType {
			makeImmutable(t, c, s.Name)
		}
	}

	newRoot := target
	migrating := newRoot
	migrating.PreviousRootOfTrust = operator.RootOfTrustLocal
	m := startReplicaWith(t, env, migrating, true, true, 200*time.Millisecond)
	calls, failed, firstErr, stop := decryptLoad(actx, []kmsv1.KeyManagementServiceClient{m.client(t)}, samples)
	rot := waitMigrated(t, c, target.RootOfTrust, "remove --previous-root-of-trust")
	stop()
	if failed.Load() != 0 || calls.Load() == 0 {
		t.Fatalf("%d of %d decrypts failed during the migration, first: %v", failed.Load(), calls.Load(), firstErr.Load())
	}
	// The replaced root check, immutable under the new root, is current:
	// another round leaves it alone rather than replacing it again.
	checkBefore := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: seal.RootCheckSecretName}, checkBefore); err != nil {
		t.Fatal(err)
	}
	if again, err := seal.ResealCheck(ctx, c, c, testenv.OperatorNamespace, m.op.Sealer, m.op.Store.Previous, false); err != nil || again {
		t.Fatalf("ResealCheck on the resealed root check = %t, %v; want nothing to do", again, err)
	}
	checkAfter := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: seal.RootCheckSecretName}, checkAfter); err != nil || checkAfter.UID != checkBefore.UID {
		t.Fatalf("root check replaced again (UID %s, was %s): %v", checkAfter.UID, checkBefore.UID, err)
	}
	t.Logf("%d decrypts during the migration, none failed; %d sealed Secrets resealed", calls.Load(), rot.Status.SealedSecrets)
	secrets = &corev1.SecretList{}
	if err := c.List(ctx, secrets, client.InNamespace(testenv.OperatorNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		switch {
		case s.Type == seal.RootCheckSecretType && (string(s.Data["sealer"]) != target.RootOfTrust || s.Annotations[seal.AnnotationResealed] != ""):
			t.Fatalf("root check sealed by %q in its data (resealed annotation %q): want it replaced, sealed by %s", s.Data["sealer"], s.Annotations[seal.AnnotationResealed], target.RootOfTrust)
		case s.Type != seal.SealedSecretType:
		case s.Annotations[seal.AnnotationResealedBy] != target.RootOfTrust:
			t.Fatalf("Secret %s (immutable) is resealed by %q, want %s", s.Name, s.Annotations[seal.AnnotationResealedBy], target.RootOfTrust)
		}
	}
	m.stop()

	// Another root of the new provider, with the previous root next to
	// it, is the wrong root: with the root check, and without it (proved
	// against the material, which claims the new provider).
	if wrong := wrongRoot(t, target); wrong != nil {
		wrong.PreviousRootOfTrust = operator.RootOfTrustLocal
		for _, check := range []bool{true, false} {
			if !check {
				if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: seal.RootCheckSecretName}}); err != nil {
					t.Fatal(err)
				}
			}
			w := startReplicaWith(t, env, *wrong, false, false, time.Hour)
			if err := w.op.RootOfTrust.Err(); !errors.Is(err, seal.ErrWrongRoot) {
				t.Fatalf("a manager with another %s root and --previous-root-of-trust local (root check kept: %t): %v, want the wrong root", target.RootOfTrust, check, err)
			}
			w.stop()
		}
	}

	// The old root deleted: the new root alone serves everything.
	if err := c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: seal.RootKeySecretName}}); err != nil {
		t.Fatal(err)
	}
	after := startReplicaWith(t, env, newRoot, true, true, 200*time.Millisecond).client(t)
	for _, s := range samples {
		out, err := after.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: s.ct})
		if err != nil || string(out.Plaintext) != s.pt {
			t.Fatalf("Decrypt with the local root key deleted = %v, %v; want %q", out, err, s.pt)
		}
	}
	key := &kmsv1alpha1.Key{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "k0"}, key); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(key.DeepCopy())
	key.Annotations = map[string]string{kmsv1alpha1.RotateAnnotation: "after migration"}
	if err := c.Patch(ctx, key, patch); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); key.Status.CurrentVersion != 2; time.Sleep(100 * time.Millisecond) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "k0"}, key); err != nil || time.Now().After(deadline) {
			t.Fatalf("key k0 was not rotated under the new root: %v %+v", err, key.Status)
		}
	}
	// Under a root other than local, new material is immutable again.
	v2 := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: keystore.SecretName(key.Status.KeyID, 2)}, v2); err != nil {
		t.Fatal(err)
	}
	if v2.Immutable == nil || !*v2.Immutable || string(v2.Data["sealer"]) != target.RootOfTrust {
		t.Fatalf("version 2 of k0: immutable %v, sealed by %q; want immutable, sealed by %s", v2.Immutable, v2.Data["sealer"], target.RootOfTrust)
	}
}

// sample is a ciphertext and the plaintext it must decrypt to.
type sample struct {
	ct []byte
	pt string
}

// keysAndCiphertexts creates keys k0..k<n-1> in namespace default and a
// ServiceAccount app that may encrypt and decrypt with them, and encrypts
// one value with each through kmsc; it returns them and app's context.
func keysAndCiphertexts(t *testing.T, env *testenv.Env, kmsc kmsv1.KeyManagementServiceClient, n int) ([]sample, context.Context) {
	t.Helper()
	ctx, c, ns := context.Background(), env.Client, "default"
	for _, o := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "app-keys"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "app"}}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "app-keys"}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"kms.kubekms.io"}, Resources: []string{"keys"}, Verbs: []string{"encrypt", "decrypt"}}}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := c.Create(ctx, &kmsv1alpha1.Key{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("k%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := env.Clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"kubekms"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tr.Status.Token)
	var samples []sample
	for i := range n {
		pt := fmt.Sprintf("secret %d", i)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			// The key's first version, RBAC and the key cache may lag.
			out, err := kmsc.Encrypt(actx, &kmsv1.EncryptRequest{KeyId: fmt.Sprintf("k%d", i), Plaintext: []byte(pt)})
			if err == nil {
				samples = append(samples, sample{out.CiphertextBlob, pt})
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Encrypt with k%d: %v", i, err)
			}
		}
	}
	return samples, actx
}

// decryptLoad decrypts samples without pause, from four goroutines taking
// turns over clients, until stop; it counts calls and failures (a wrong
// plaintext is one) and keeps the first error.
func decryptLoad(actx context.Context, clients []kmsv1.KeyManagementServiceClient, samples []sample) (calls, failed *atomic.Int64, firstErr *atomic.Value, stop func()) {
	calls, failed, firstErr = new(atomic.Int64), new(atomic.Int64), new(atomic.Value)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				s := samples[(i*7+w)%len(samples)]
				out, err := clients[(i+w)%len(clients)].Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: s.ct})
				calls.Add(1)
				if err == nil && string(out.Plaintext) != s.pt {
					err = fmt.Errorf("plaintext %q, want %q", out.Plaintext, s.pt)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	var once sync.Once
	return calls, failed, firstErr, func() { once.Do(func() { close(done); wg.Wait() }) }
}

// makeImmutable replaces a Secret of the operator namespace by an
// immutable copy, as releases before root rotation wrote them.
func makeImmutable(t *testing.T, c client.Client, name string) {
	t.Helper()
	ctx := context.Background()
	old := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: name}, old); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, old); err != nil {
		t.Fatal(err)
	}
	again := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: old.Namespace, Name: old.Name, Labels: old.Labels, Annotations: old.Annotations},
		Type: old.Type, Data: old.Data, Immutable: new(true)}
	if err := c.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
}

// wrongRoot is target with another root key of the same provider, where
// the test can make one (file); nil elsewhere.
func wrongRoot(t *testing.T, target operator.Options) *operator.Options {
	if target.RootOfTrust != operator.RootOfTrustFile {
		return nil
	}
	dir := t.TempDir()
	k := make([]byte, seal.RootKeySize)
	_, _ = rand.Read(k)
	if err := os.WriteFile(filepath.Join(dir, "root-key-v1"), k, 0o400); err != nil {
		t.Fatal(err)
	}
	return &operator.Options{RootOfTrust: operator.RootOfTrustFile, RootKeyPath: dir}
}

// waitMigrated waits until the RootOfTrust reports a finished migration to
// provider: at least 8 sealed Secrets, none pending, Resealed with a message
// that says what to do with the previous root.
func waitMigrated(t *testing.T, c client.Client, provider, says string) *kmsv1alpha1.RootOfTrust {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		rot := &kmsv1alpha1.RootOfTrust{}
		err := c.Get(context.Background(), client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: kmsv1alpha1.RootOfTrustName}, rot)
		cond := meta.FindStatusCondition(rot.Status.Conditions, kmsv1alpha1.RootOfTrustConditionResealed)
		if err == nil && rot.Status.Provider == provider && rot.Status.SealedSecrets >= 8 && rot.Status.ResealPending == 0 &&
			cond != nil && cond.Status == metav1.ConditionTrue && strings.Contains(cond.Message, says) {
			return rot
		}
		if time.Now().After(deadline) {
			t.Fatalf("migration did not finish: %+v", rot.Status)
		}
	}
}

// startEnv starts a control plane with the CRDs, stopped when t ends.
func startEnv(t *testing.T) *testenv.Env {
	t.Helper()
	env, err := testenv.Start(testenv.Options{CRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env
}
