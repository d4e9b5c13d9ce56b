package main

// Commands about a key itself: describe (through the data plane) and
// rotate (through the API server).

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/kmsclient"
)

// describeCmd is `describe`: DescribeKey, printed as kubectl describe
// prints objects.
func describeCmd(conn *connection, s io3) *cobra.Command {
	return &cobra.Command{
		Use:   "describe KEY",
		Short: "Show a key's metadata as the data plane sees it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return conn.run(cmd, func(ctx context.Context, kms *kmsclient.Client) error {
				d, err := kms.DescribeKey(ctx, &kmsv1.DescribeKeyRequest{KeyId: args[0]})
				if err != nil {
					return err
				}
				m := d.KeyMetadata
				fmt.Fprintf(s.out, "Key:              %s/%s\nKey ID:           %s\nKey spec:         %s\nKey usage:        %s\nState:            %s\nOrigin:           %s\nCurrent version:  %d\nCreated:          %s\nRotation enabled: %t\n",
					m.Namespace, m.Name, m.KeyId, m.KeySpec, m.KeyUsage, m.KeyState, m.Origin, m.CurrentVersion, m.CreationDate.AsTime().Format(time.RFC3339), m.RotationEnabled)
				if m.NextRotationDate != nil {
					fmt.Fprintf(s.out, "Next rotation:    %s\n", m.NextRotationDate.AsTime().Format(time.RFC3339))
				}
				if m.Description != "" {
					fmt.Fprintf(s.out, "Description:      %s\n", m.Description)
				}
				return nil
			})
		},
	}
}

// rotateCmd is `rotate`: not a data-plane call but a change of the Key
// through the API server (a new value of the kms.kubekms.io/rotate
// annotation, which the admin webhook checks as action Rotate); the
// controller makes exactly one new version for it.
func rotateCmd(conn *connection, s io3) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate KEY",
		Short: "Rotate a key now (sets the kms.kubekms.io/rotate annotation: one new version)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, name, err := conn.keyClient(args[0])
			if err != nil {
				return err
			}
			value := time.Now().UTC().Format(time.RFC3339Nano)
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kmsv1alpha1.RotateAnnotation, value)
			key := &kmsv1alpha1.Key{}
			key.Namespace, key.Name = ns, name
			if err := c.Patch(cmd.Context(), key, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
				return err
			}
			_, err = fmt.Fprintf(s.out, "key.kms.kubekms.io/%s rotation requested (%s=%s)\n", name, kmsv1alpha1.RotateAnnotation, value)
			return err
		},
	}
}

// keyClient is a Kubernetes client for kubekms objects, with the namespace
// and name of a key given as NAME or NAMESPACE/NAME.
func (c *connection) keyClient(ref string) (client.Client, string, string, error) {
	restConfig, err := c.kube.ToRESTConfig()
	if err != nil {
		return nil, "", "", err
	}
	scheme := runtime.NewScheme()
	if err := kmsv1alpha1.AddToScheme(scheme); err != nil {
		return nil, "", "", err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, "", "", err
	}
	kc, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", "", err
	}
	ns, err := c.namespace()
	if err != nil {
		return nil, "", "", err
	}
	name := ref
	if before, after, ok := strings.Cut(ref, "/"); ok {
		ns, name = before, after
	}
	return kc, ns, name, nil
}
