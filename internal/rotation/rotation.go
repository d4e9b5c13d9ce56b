// Package rotation decides when a key gets a new version. It is pure: the
// stored versions, the Key's request and the time come in; a decision comes out.
package rotation

import "time"

// Reason says why a version is made.
type Reason string

const (
	// None: no new version is due.
	None Reason = ""
	// OnDemand: the rotate annotation carries a value no version answered yet.
	OnDemand Reason = "OnDemand"
	// Scheduled: the newest version is older than the rotation period.
	Scheduled Reason = "Scheduled"
)

// Version is what the decision needs to know of a stored version.
type Version struct {
	Number        int32
	CreatedAt     time.Time
	RotateRequest string
}

// Input is everything the decision depends on.
type Input struct {
	// Versions are the stored versions, in any order; at least one.
	Versions []Version
	// RotateRequest is the rotate annotation's current value ("" when unset).
	RotateRequest string
	// KeyEnabled is false for a disabled key, which does not rotate (as on
	// AWS KMS); a pending request is answered once the key is enabled again.
	KeyEnabled bool
	// ScheduleEnabled and Period configure scheduled rotation.
	ScheduleEnabled bool
	Period          time.Duration
	Now             time.Time
}

// Decision is what to do now and when to look again.
type Decision struct {
	Reason Reason
	// NextVersion is the number of the version to make, when Reason != None.
	NextVersion int32
	// NextRotation is when scheduled rotation is due next (zero when it is
	// off or the key is disabled), counted from the newest version,
	// including one made by this decision.
	NextRotation time.Time
}

// Decide returns the rotation due at in.Now. At most one version is due at a
// time; an on-demand request wins over the schedule, and a version made for
// either resets the schedule.
func Decide(in Input) Decision {
	newest := Version{}
	answered := false
	for _, v := range in.Versions {
		if v.Number > newest.Number {
			newest = v
		}
		if in.RotateRequest != "" && v.RotateRequest == in.RotateRequest {
			answered = true
		}
	}
	if !in.KeyEnabled {
		return Decision{}
	}
	d := Decision{}
	switch {
	case in.RotateRequest != "" && !answered:
		d.Reason = OnDemand
	case in.ScheduleEnabled && !in.Now.Before(newest.CreatedAt.Add(in.Period)):
		d.Reason = Scheduled
	}
	last := newest.CreatedAt
	if d.Reason != None {
		d.NextVersion = newest.Number + 1
		last = in.Now
	}
	if in.ScheduleEnabled {
		d.NextRotation = last.Add(in.Period)
	}
	return d
}
