// Package docs holds the tests that keep the documentation honest where a
// program can tell: the CLI commands docs/dataplane.md lists are the
// commands kubectl-kms has, every RPC of the proto has a row in
// docs/dataplane.md, and docs/access-control.md's table of actions says
// what the action table (internal/policy) says. Each test reads the docs as
// a reader does, from the repository, and names what to fix.
package docs
