package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/kubekms/kubekms/internal/policy"
)

// can-i takes every action of the table as its name, in lower case, or
// dashed as kubectl spells commands, and passes anything else on for the
// service to refuse.
func TestCanIActionsResolveThroughTheTable(t *testing.T) {
	dashes := regexp.MustCompile(`([a-z])([A-Z])`)
	for _, a := range policy.Actions {
		for _, spelling := range []string{a.Name, a.Verb, strings.ToLower(dashes.ReplaceAllString(a.Name, "$1-$2"))} {
			if got := canonicalAction(spelling); got != a.Name {
				t.Errorf("canonicalAction(%q) = %q, want %q", spelling, got, a.Name)
			}
		}
	}
	for _, notAnAction := range []string{"delete", "restore", "re-encrypt", "*"} {
		if got := canonicalAction(notAnAction); got != notAnAction {
			t.Errorf("canonicalAction(%q) = %q, want it passed on unchanged", notAnAction, got)
		}
	}
}

// The examples of can-i's help name actions of the table.
func TestCanIExamplesNameActions(t *testing.T) {
	ex := canICmd(&connection{}, io3{}).Example
	m := regexp.MustCompile(`kubectl kms can-i (\S+)`).FindAllStringSubmatch(ex, -1)
	if len(m) == 0 {
		t.Fatalf("no example in %q", ex)
	}
	for _, e := range m {
		if _, ok := policy.CanonicalAction(e[1]); !ok {
			t.Errorf("the example names %q, which is no action", e[1])
		}
	}
}
