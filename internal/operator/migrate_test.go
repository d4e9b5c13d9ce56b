package operator_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	"github.com/kubekms/kubekms/internal/operator"
	"github.com/kubekms/kubekms/internal/seal"
	"github.com/kubekms/kubekms/internal/testenv"
)

// TestMigrationBetweenRootsOutsideTheClusterUnderLoad migrates from a file
// root to an AWS KMS key (local-kms) while a load generator decrypts what
// was encrypted before: no call fails, every sealed Secret ends resealed
// by AWS KMS, and with the file root gone everything still decrypts.
func TestMigrationBetweenRootsOutsideTheClusterUnderLoad(t *testing.T) {
	newKey, _ := localKMS(t)
	awsKeyID := newKey()
	dir := t.TempDir()
	k := make([]byte, seal.RootKeySize)
	_, _ = rand.Read(k)
	if err := os.WriteFile(filepath.Join(dir, "root-key-v1"), k, 0o400); err != nil {
		t.Fatal(err)
	}
	from := operator.Options{RootOfTrust: operator.RootOfTrustFile, RootKeyPath: dir}
	to := operator.Options{RootOfTrust: operator.RootOfTrustAWSKMS, AWSKMSKeyID: awsKeyID}

	ctx := context.Background()
	env := startEnv(t)
	c := env.Client
	src := startReplicaWith(t, env, from, true, true, 200*time.Millisecond)
	samples, actx := keysAndCiphertexts(t, env, src.client(t), 8)
	src.stop()

	migrating := to
	migrating.PreviousRootOfTrust, migrating.PreviousRootKeyPath = operator.RootOfTrustFile, dir
	m := startReplicaWith(t, env, migrating, true, true, 200*time.Millisecond)
	calls, failed, firstErr, stop := decryptLoad(actx, []kmsv1.KeyManagementServiceClient{m.client(t)}, samples)
	waitMigrated(t, c, operator.RootOfTrustAWSKMS, "remove --previous-root-of-trust and the --previous-* flags")
	stop()
	if failed.Load() != 0 || calls.Load() == 0 {
		t.Fatalf("%d of %d decrypts failed during the migration, first: %v", failed.Load(), calls.Load(), firstErr.Load())
	}
	t.Logf("%d decrypts during the migration from file to awskms, none failed", calls.Load())
	if err := m.op.Previous.Err(); err != nil {
		t.Fatalf("the previous root, proved against what it sealed: %v", err)
	}
	m.stop()

	// Another file root given as the previous one is the wrong root, even
	// with the root check resealed under AWS KMS already.
	otherDir := t.TempDir()
	_, _ = rand.Read(k)
	if err := os.WriteFile(filepath.Join(otherDir, "root-key-v1"), k, 0o400); err != nil {
		t.Fatal(err)
	}
	wrong := to
	wrong.PreviousRootOfTrust, wrong.PreviousRootKeyPath = operator.RootOfTrustFile, otherDir
	w := startReplicaWith(t, env, wrong, false, false, time.Hour)
	if err := w.op.Previous.Err(); !errors.Is(err, seal.ErrWrongRoot) {
		t.Fatalf("a previous root that did not seal the material: %v, want the wrong root", err)
	}
	w.stop()
	secrets := &corev1.SecretList{}
	if err := c.List(ctx, secrets, client.InNamespace(testenv.OperatorNamespace)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if s.Type == seal.SealedSecretType && s.Annotations[seal.AnnotationResealedBy] != operator.RootOfTrustAWSKMS {
			t.Fatalf("Secret %s (immutable under file) is resealed by %q, want awskms", s.Name, s.Annotations[seal.AnnotationResealedBy])
		}
	}

	// The file root retired: AWS KMS alone serves everything.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	after := startReplicaWith(t, env, to, true, true, 200*time.Millisecond).client(t)
	for _, s := range samples {
		out, err := after.Decrypt(actx, &kmsv1.DecryptRequest{CiphertextBlob: s.ct})
		if err != nil || string(out.Plaintext) != s.pt {
			t.Fatalf("Decrypt with the file root gone = %v, %v; want %q", out, err, s.pt)
		}
	}
}
