package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
)

// reconcileDelete moves the key's material to tombstones kept for the
// deletion window, then lets the Key go. It needs nothing but the API
// server, so deleting a namespace never hangs on it.
func (r *KeyReconciler) reconcileDelete(ctx context.Context, key *kmsv1alpha1.Key) error {
	if !controllerutil.ContainsFinalizer(key, kmsv1alpha1.KeyFinalizer) {
		return nil
	}
	active, err := r.Store.ActiveByKeyName(ctx, key.Namespace, key.Name)
	if err != nil {
		return err
	}
	window := r.DeletionWindowOverride
	if window == 0 {
		window = durationOr(key.Spec.DeletionWindow, 720*time.Hour)
	}
	destroyAfter := r.Clock.Now().Add(window)
	record := ""
	if len(active) > 0 {
		// The policy goes with the Key (garbage collector); a restore is
		// checked under, and comes back under, this record of it. A policy
		// already gone (its namespace is being deleted) leaves the record
		// the versions carry.
		policies := &kmsv1alpha1.KeyPolicyList{}
		if err := r.List(ctx, policies, client.InNamespace(key.Namespace)); err != nil {
			return err
		}
		record = active[len(active)-1].DeletedPolicy
		if bound := access.Governing(policies.Items, key.Namespace, key.UID); bound != nil {
			record = access.RecordPolicy(bound)
		} else if record == "" {
			record = access.RecordPolicy(access.InitialKeyPolicy(key))
		}
	}
	for _, v := range active {
		if err := r.Store.Tombstone(ctx, v, destroyAfter, record); err != nil {
			return fmt.Errorf("schedule deletion: %w", err)
		}
	}
	if len(active) > 0 {
		r.Recorder.Eventf(key, nil, corev1.EventTypeNormal, ReasonDeletionScheduled, StepScheduleDeletion,
			"Scheduled destruction of key %s (%d versions) at %s; a Key with spec.restoreFrom: %s restores it until then",
			active[0].KeyID, len(active), destroyAfter.UTC().Format(time.RFC3339), active[0].KeyID)
	}
	if key.Spec.Origin == kmsv1alpha1.KeyOriginExternal && key.Status.KeyID != "" {
		// The wrapping key is not material: nothing to keep for a restore.
		p, err := r.Store.ImportParameters(ctx, key.Status.KeyID)
		if err != nil {
			return err
		}
		if p != nil {
			if err := r.Store.DeleteImportParameters(ctx, p); err != nil {
				return err
			}
		}
	}
	orig := key.DeepCopy()
	controllerutil.RemoveFinalizer(key, kmsv1alpha1.KeyFinalizer)
	if err := r.Patch(ctx, key, client.MergeFrom(orig)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}
