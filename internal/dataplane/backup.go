package dataplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	kmsv1 "github.com/kubekms/kubekms/api/proto/kubekms/v1"
	kmsv1alpha1 "github.com/kubekms/kubekms/api/v1alpha1"
	"github.com/kubekms/kubekms/internal/audit"
	"github.com/kubekms/kubekms/internal/authn"
	"github.com/kubekms/kubekms/internal/authz"
	"github.com/kubekms/kubekms/internal/backup"
	"github.com/kubekms/kubekms/internal/recovery"
)

// Backup configures the BackupService (api/proto/kubekms/v1/backup.proto):
// nil in Config serves none.
type Backup struct {
	Exporter *recovery.Exporter
	Restorer *recovery.Restorer
	// Recipients are the public keys every bundle is encrypted to.
	Recipients []backup.Recipient
}

// RBAC verbs on rootoftrusts.kms.kubekms.io (named default, in the
// operator's namespace) that authorize a backup and a restore.
const (
	VerbBackup  = "backup"
	VerbRestore = "restore"
)

// The largest restore the service reads, and its bundles' chunk size.
const (
	maxRestoreBytes = 256 << 20
	backupChunk     = 32 << 10
)

// backupServer implements kubekms.v1.BackupService. Its calls are streams,
// which the data plane's interceptor does not see: each handler
// authenticates (the same Authenticator), authorizes (RBAC only, uncached:
// these are rare and cover every key) and writes its own audit record.
type backupServer struct {
	kmsv1.UnimplementedBackupServiceServer

	cfg        Backup
	namespace  string
	authn      *authn.Authenticator
	authorizer *authz.Authorizer
	audit      audit.Sink
	failClose  bool
	clock      clock.PassiveClock
}

// Backup implements BackupService.
func (s *backupServer) Backup(_ *kmsv1.BackupRequest, stream grpc.ServerStreamingServer[kmsv1.BackupChunk]) error {
	ctx := stream.Context()
	return s.serve(ctx, "Backup", VerbBackup, func(rec *audit.Record) error {
		bundle, err := recovery.Bundle(ctx, s.cfg.Exporter, s.cfg.Recipients, s.clock.Now())
		if err != nil {
			return s.failed(ctx, "Backup", err)
		}
		// The record is written before the first byte leaves: a bundle
		// sent cannot be taken back.
		if err := s.record(ctx, rec, nil); err != nil {
			return err
		}
		for len(bundle) > 0 {
			n := min(len(bundle), backupChunk)
			if err := stream.Send(&kmsv1.BackupChunk{Data: bundle[:n]}); err != nil {
				return err
			}
			bundle = bundle[n:]
		}
		return nil
	})
}

// Restore implements BackupService.
func (s *backupServer) Restore(stream grpc.ClientStreamingServer[kmsv1.RestoreChunk, kmsv1.RestoreResponse]) error {
	ctx := stream.Context()
	return s.serve(ctx, "Restore", VerbRestore, func(*audit.Record) error {
		var plaintext []byte
		defer func() { clear(plaintext) }()
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			if len(plaintext)+len(chunk.Data) > maxRestoreBytes {
				return errValidation("the restored contents exceed %d MiB", maxRestoreBytes>>20)
			}
			plaintext = append(plaintext, chunk.Data...)
		}
		contents, err := recovery.DecodeContents(plaintext)
		if err != nil {
			return errValidation("%v", err)
		}
		defer contents.Wipe()
		digest := sha256.Sum256(plaintext)
		sum, err := s.cfg.Restorer.Restore(ctx, contents, hex.EncodeToString(digest[:]), s.clock.Now())
		if err != nil {
			return s.failed(ctx, "Restore", err)
		}
		return stream.SendAndClose(&kmsv1.RestoreResponse{
			Keys: int32(sum.Keys), Versions: int32(sum.Versions), Tombstones: int32(sum.Tombstones),
			Policies: int32(sum.Policies), Grants: int32(sum.Grants), Skipped: sum.Skipped,
		})
	})
}

// serve authenticates the stream's caller, asks RBAC for verb on the
// RootOfTrust, runs fn, and audits the call before its answer leaves; fn
// may write the record itself earlier (record), before it streams.
func (s *backupServer) serve(ctx context.Context, op, verb string, fn func(*audit.Record) error) error {
	rec := &audit.Record{AuditVersion: audit.Version, RequestID: audit.NewRequestID(), EventName: op, EventTime: s.clock.Now()}
	var from net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr
		rec.SourceAddress = p.Addr.String()
	}
	err := s.authorize(ctx, rec, from, verb, func() error { return fn(rec) })
	if rec.Outcome == "" { // fn did not record the call already
		if aerr := s.record(ctx, rec, err); aerr != nil {
			return aerr
		}
	}
	return err
}

// record writes the call's audit record with the outcome of err. With
// fail-closed auditing, a record that cannot be written refuses the call.
func (s *backupServer) record(ctx context.Context, rec *audit.Record, err error) error {
	rec.Outcome, rec.ErrorCode = outcome(err)
	if s.audit == nil {
		return nil
	}
	if werr := s.audit.Write(rec); werr != nil {
		log.FromContext(ctx).Error(werr, "Could not write an audit record", "requestID", rec.RequestID, "failClosed", s.failClose)
		if s.failClose && err == nil {
			return errAuditUnavailable()
		}
	}
	return nil
}

func (s *backupServer) authorize(ctx context.Context, rec *audit.Record, from net.Addr, verb string, fn func() error) error {
	p, err := authenticate(ctx, s.authn, from, "BackupService/"+rec.EventName)
	if err != nil {
		return err
	}
	rec.Principal, rec.SourceNamespace = auditPrincipal(p), p.Namespace
	d, err := s.authorizer.Review(ctx, p, authorizationv1.ResourceAttributes{
		Group: kmsv1alpha1.GroupVersion.Group, Resource: "rootoftrusts", Verb: verb,
		Namespace: s.namespace, Name: kmsv1alpha1.RootOfTrustName,
	})
	if err != nil {
		log.FromContext(ctx).Error(err, "Could not ask RBAC", "verb", verb)
		return errInternal()
	}
	rec.DecidedBy = d.DecidedBy
	if !d.Allowed {
		return newError(codes.PermissionDenied, ReasonAccessDenied,
			"%s may not %s: it needs RBAC verb %s on rootoftrusts.%s named %s in namespace %s (ClusterRole kubekms-backup-operator)",
			p.Username, verb, verb, kmsv1alpha1.GroupVersion.Group, kmsv1alpha1.RootOfTrustName, s.namespace)
	}
	return fn()
}

// failed maps an error of a backup or restore to its answer: what the
// caller can act on is said, the rest logged.
func (s *backupServer) failed(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, recovery.ErrNoRecipients):
		return newError(codes.FailedPrecondition, ReasonUnsupportedOperation, "%v", err)
	case errors.Is(err, recovery.ErrInvalid):
		return errValidation("%v", err)
	case errors.Is(err, recovery.ErrConflict):
		return newError(codes.FailedPrecondition, ReasonConflict, "%v", err)
	case rootUnavailable(err):
		log.FromContext(ctx).Error(err, "The root of trust is unavailable", "operation", op)
		return errRootUnavailable()
	}
	log.FromContext(ctx).Error(err, "Could not complete", "operation", op)
	return newError(codes.Unavailable, ReasonInternal, "%s could not complete; the manager's log says why; retry", op)
}

// errBackupMisconfigured is the answer of a backup service set up without
// its parts: a bug.
var errBackupMisconfigured = fmt.Errorf("data plane: Backup needs an Exporter and a Restorer")
