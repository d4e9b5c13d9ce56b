package rotation

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type inputOption func(*Input)

func newInput(opts ...inputOption) Input {
	in := Input{
		Versions:   []Version{{Number: 1, CreatedAt: t0}},
		KeyEnabled: true,
		Period:     24 * time.Hour,
		Now:        t0.Add(time.Hour),
	}
	for _, o := range opts {
		o(&in)
	}
	return in
}

func withVersions(vs ...Version) inputOption { return func(in *Input) { in.Versions = vs } }
func withRequest(r string) inputOption       { return func(in *Input) { in.RotateRequest = r } }
func withSchedule() inputOption              { return func(in *Input) { in.ScheduleEnabled = true } }
func disabled() inputOption                  { return func(in *Input) { in.KeyEnabled = false } }
func at(d time.Duration) inputOption         { return func(in *Input) { in.Now = t0.Add(d) } }

func TestDecide(t *testing.T) {
	tests := map[string]struct {
		in          Input
		wantReason  Reason
		wantVersion int32
		wantNext    time.Time
	}{
		"nothing asked, no schedule": {
			in: newInput(),
		},
		"new rotate value rotates on demand": {
			in:          newInput(withRequest("a")),
			wantReason:  OnDemand,
			wantVersion: 2,
		},
		"rotate value already answered by a version does nothing": {
			in: newInput(withRequest("a"), withVersions(
				Version{Number: 1, CreatedAt: t0},
				Version{Number: 2, CreatedAt: t0, RotateRequest: "a"})),
		},
		"the value stamped on version 1 at creation is not a request": {
			in: newInput(withRequest("a"), withVersions(Version{Number: 1, CreatedAt: t0, RotateRequest: "a"})),
		},
		"an older value seen again is not new": {
			in: newInput(withRequest("a"), withVersions(
				Version{Number: 1, CreatedAt: t0},
				Version{Number: 2, CreatedAt: t0, RotateRequest: "a"},
				Version{Number: 3, CreatedAt: t0, RotateRequest: "b"})),
		},
		"next version follows the highest, whatever the order": {
			in: newInput(withRequest("c"), withVersions(
				Version{Number: 3, CreatedAt: t0},
				Version{Number: 1, CreatedAt: t0},
				Version{Number: 2, CreatedAt: t0})),
			wantReason:  OnDemand,
			wantVersion: 4,
		},
		"schedule not yet due reports the next time": {
			in:       newInput(withSchedule(), at(23*time.Hour)),
			wantNext: t0.Add(24 * time.Hour),
		},
		"schedule due exactly at the period": {
			in:          newInput(withSchedule(), at(24*time.Hour)),
			wantReason:  Scheduled,
			wantVersion: 2,
			wantNext:    t0.Add(48 * time.Hour),
		},
		"schedule counts from the newest version": {
			in: newInput(withSchedule(), at(30*time.Hour), withVersions(
				Version{Number: 1, CreatedAt: t0},
				Version{Number: 2, CreatedAt: t0.Add(20 * time.Hour)})),
			wantNext: t0.Add(44 * time.Hour),
		},
		"on demand wins over schedule and resets it": {
			in:          newInput(withSchedule(), withRequest("x"), at(25*time.Hour)),
			wantReason:  OnDemand,
			wantVersion: 2,
			wantNext:    t0.Add(49 * time.Hour),
		},
		"disabled key neither rotates nor schedules": {
			in: newInput(withSchedule(), withRequest("x"), disabled(), at(100*time.Hour)),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Decide(tc.in)
			if got.Reason != tc.wantReason {
				t.Errorf("Reason = %q, want %q", got.Reason, tc.wantReason)
			}
			if got.NextVersion != tc.wantVersion {
				t.Errorf("NextVersion = %d, want %d", got.NextVersion, tc.wantVersion)
			}
			if !got.NextRotation.Equal(tc.wantNext) {
				t.Errorf("NextRotation = %v, want %v", got.NextRotation, tc.wantNext)
			}
		})
	}
}
