package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
)

// checkSpec is the first phase: a keySpec this release cannot make material
// for is a terminal problem, before anything is written.
func (r *KeyReconciler) checkSpec(_ context.Context, s *keyScope) error {
	s.terminal = specProblem(s.key)
	return nil
}

// specProblem says why this release cannot make the key's material, if so.
func specProblem(key *kmsv1alpha1.Key) *terminalProblem {
	if !supportedKeySpec(key.Spec.KeySpec) {
		return &terminalProblem{kmsv1alpha1.KeyReasonUnsupportedKeySpec, fmt.Sprintf("keySpec %s is not supported yet", key.Spec.KeySpec)}
	}
	return nil
}

// guardMaterial refuses, as a terminal problem, to let the material phases
// make anything under a key ID whose material has disappeared: new material
// there would make every old ciphertext undecryptable.
func (r *KeyReconciler) guardMaterial(_ context.Context, s *keyScope) error {
	if s.terminal = lostMaterial(s.key, s.versions, r.Store.Namespace); s.terminal != nil {
		r.Recorder.Eventf(s.key, nil, corev1.EventTypeWarning, ReasonMaterialMissing, StepValidate, s.terminal.message)
	}
	return nil
}

// lostMaterial is the one place status is trusted, as a latch: a key whose
// status counted versions but that has no live version lost its material
// (namespace is where the material lives).
func lostMaterial(key *kmsv1alpha1.Key, versions []keystore.Version, namespace string) *terminalProblem {
	if len(versions) > 0 || key.Status.CurrentVersion == 0 {
		return nil
	}
	return &terminalProblem{kmsv1alpha1.KeyReasonMaterialMissing, fmt.Sprintf(
		"The sealed material of key %s (version %d and older) is missing from namespace %s; restore its Secrets from a backup. No new material is made under this key ID",
		key.Status.KeyID, key.Status.CurrentVersion, namespace)}
}

// reconcileGenerate is the material phase of Generated keys: it makes
// version 1 when there is none. The version's Secret has a deterministic
// name, so racing writers make it once; the store reads the API server, not
// a cache, so a version is never made twice on stale data.
func (r *KeyReconciler) reconcileGenerate(ctx context.Context, s *keyScope) error {
	if s.key.Spec.Origin == kmsv1alpha1.KeyOriginExternal || len(s.versions) > 0 {
		return nil
	}
	// A rotate value present at creation is not a request to rotate: version
	// 1 answers it.
	created, err := r.createVersion(ctx, s, 1, r.Clock.Now(), s.key.Annotations[kmsv1alpha1.RotateAnnotation])
	if err != nil {
		return err
	}
	if created {
		r.Recorder.Eventf(s.key, nil, corev1.EventTypeNormal, ReasonCreated, StepCreateMaterial, "Created key %s version 1", s.keyID)
	}
	if s.versions, err = r.Store.ActiveByKeyName(ctx, s.key.Namespace, s.key.Name); err != nil {
		return err
	}
	if len(s.versions) == 0 {
		return fmt.Errorf("version 1 of key %s is not readable yet", s.keyID)
	}
	return nil
}

// createVersion generates and stores a version made at now, answering
// rotateRequest. It reports false when the version already existed.
func (r *KeyReconciler) createVersion(ctx context.Context, s *keyScope, version int32, now time.Time, rotateRequest string) (bool, error) {
	material, public, err := newMaterial(s.key.Spec.KeySpec, r.Random)
	defer clear(material)
	if err != nil {
		return false, fmt.Errorf("generate material: %w", err)
	}
	return r.Store.Create(ctx, s.owner(), version, material, public, now, rotateRequest)
}
