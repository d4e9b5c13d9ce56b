package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/access"
)

// recordPolicy is the last phase: it keeps the record of the key's policy on
// its live versions current, so a deletion finds it even when the KeyPolicy
// went first. While the key's namespace is being deleted the record is not
// touched: its policies are deleted before it, and that is no change of
// policy.
func (r *KeyReconciler) recordPolicy(ctx context.Context, s *keyScope) error {
	if len(s.versions) == 0 {
		return nil
	}
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: s.key.Namespace}, ns); err != nil || !ns.DeletionTimestamp.IsZero() {
		return client.IgnoreNotFound(err)
	}
	pol, err := r.governingPolicy(ctx, s.key)
	if err != nil {
		return err
	}
	record := access.RecordPolicy(pol)
	for _, v := range s.versions {
		if v.DeletedPolicy != record {
			if err := r.Store.RecordPolicy(ctx, v, record); err != nil {
				return fmt.Errorf("record the key's policy: %w", err)
			}
		}
	}
	return nil
}

// governingPolicy is the policy governing key now: its KeyPolicy, else its
// spec.initialPolicy (nil: the default policy).
func (r *KeyReconciler) governingPolicy(ctx context.Context, key *kmsv1alpha1.Key) (*kmsv1alpha1.KeyPolicy, error) {
	policies := &kmsv1alpha1.KeyPolicyList{}
	if err := r.List(ctx, policies, client.InNamespace(key.Namespace)); err != nil {
		return nil, err
	}
	if p := access.Governing(policies.Items, key.Namespace, key.UID); p != nil {
		return p, nil
	}
	return access.InitialKeyPolicy(key), nil
}
