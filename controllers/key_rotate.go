package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/keystore"
	"github.com/kubekms/kubekms/internal/rotation"
)

// defaultRotationPeriod is spec.rotation.period's default (365 days).
const defaultRotationPeriod = 8760 * time.Hour

// reconcileRotation is the rotation phase of Generated keys: it makes the one
// version rotation.Decide says is due (on demand or on schedule), if any,
// and asks to be woken when the next scheduled one is. Imported keys get
// versions only by import, never from rotation.
func (r *KeyReconciler) reconcileRotation(ctx context.Context, s *keyScope) error {
	if s.key.Spec.Origin == kmsv1alpha1.KeyOriginExternal {
		return nil
	}
	now := r.Clock.Now()
	decision := rotation.Decide(rotationInput(s.key, s.versions, now))
	s.nextRotation = decision.NextRotation
	s.wakeAt(decision.NextRotation)
	if decision.Reason == rotation.None {
		return nil
	}
	stamp := ""
	if decision.Reason == rotation.OnDemand {
		stamp = s.key.Annotations[kmsv1alpha1.RotateAnnotation]
	}
	created, err := r.createVersion(ctx, s, decision.NextVersion, now, stamp)
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("version %d of key %s was made concurrently; deciding again", decision.NextVersion, s.keyID)
	}
	r.Recorder.Eventf(s.key, nil, corev1.EventTypeNormal, ReasonRotated, StepRotate,
		"Rotated key %s to version %d (%s)", s.keyID, decision.NextVersion, decision.Reason)
	s.versions, err = r.Store.ActiveByKeyName(ctx, s.key.Namespace, s.key.Name)
	return err
}

// rotationInput is what rotation.Decide needs of a Key and its versions at now.
func rotationInput(key *kmsv1alpha1.Key, versions []keystore.Version, now time.Time) rotation.Input {
	in := rotation.Input{
		RotateRequest:   key.Annotations[kmsv1alpha1.RotateAnnotation],
		KeyEnabled:      key.Spec.State != kmsv1alpha1.KeyDesiredDisabled,
		ScheduleEnabled: key.Spec.Rotation.Enabled,
		Period:          durationOr(key.Spec.Rotation.Period, defaultRotationPeriod),
		Now:             now,
	}
	for _, v := range versions {
		in.Versions = append(in.Versions, rotation.Version{Number: v.Version, CreatedAt: v.CreatedAt, RotateRequest: v.RotateRequest})
	}
	return in
}
