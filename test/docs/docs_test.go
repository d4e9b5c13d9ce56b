package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kubekms/kubekms/internal/policy"
)

// repoRoot is where the docs are, from this package's directory.
const repoRoot = "../.."

// cobraCommands are the commands cobra adds to every CLI by itself.
var cobraCommands = []string{"completion", "help"}

// The CLI section of docs/dataplane.md lists exactly the commands
// kubectl-kms has, as its own help lists them (built from its command
// table), and every `kubectl kms COMMAND` any doc mentions exists.
func TestDocsListTheCLICommands(t *testing.T) {
	have := cliCommands(t)
	rows := tableRows(t, section(t, "docs/dataplane.md", "## The CLI: `kubectl kms`"), "command")
	var documented []string
	for _, r := range rows {
		documented = append(documented, ticked(r[0])...)
	}
	slices.Sort(documented)
	if !slices.Equal(documented, have) {
		t.Errorf("docs/dataplane.md's CLI table lists\n  %v\nbut kubectl-kms has\n  %v", documented, have)
	}

	mention := regexp.MustCompile(`kubectl kms ([a-z][a-z-]*)`)
	docs, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	for _, f := range append(docs, filepath.Join(repoRoot, "README.md")) {
		for _, m := range mention.FindAllStringSubmatch(read(t, f), -1) {
			if !slices.Contains(have, m[1]) && !slices.Contains(cobraCommands, m[1]) {
				t.Errorf("%s mentions kubectl kms %s, which is no command", filepath.Base(f), m[1])
			}
		}
	}
}

// cliCommands runs `kubectl-kms --help` and returns its commands but
// cobra's own, sorted. go run caches the binary, so later runs are quick.
func cliCommands(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "run", "./cmd/kubectl-kms", "--help")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl-kms --help: %v\n%s", err, out)
	}
	_, list, ok := strings.Cut(string(out), "Available Commands:\n")
	if !ok {
		t.Fatalf("kubectl-kms --help lists no commands:\n%s", out)
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var names []string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) > 0 && !slices.Contains(cobraCommands, f[0]) {
			names = append(names, f[0])
		}
	}
	if len(names) < 10 {
		t.Fatalf("kubectl-kms --help lists only %v", names)
	}
	slices.Sort(names)
	return names
}

// Every RPC of the proto has a row in docs/dataplane.md's table of
// operations, no row names an RPC that does not exist, and the actions the
// rows name are actions.
func TestDocsListTheRPCs(t *testing.T) {
	proto := read(t, filepath.Join(repoRoot, "api", "proto", "kubekms", "v1", "kms.proto"))
	var rpcs []string
	for _, m := range regexp.MustCompile(`(?m)^\s*rpc (\w+)\(`).FindAllStringSubmatch(proto, -1) {
		rpcs = append(rpcs, m[1])
	}
	if len(rpcs) < 10 {
		t.Fatalf("found only %v in kms.proto", rpcs)
	}
	slices.Sort(rpcs)

	camel := regexp.MustCompile(`^[A-Z][a-z]+(?:[A-Z][a-z]*)*$`)
	var documented []string
	for _, r := range tableRows(t, section(t, "docs/dataplane.md", "## Operations"), "RPC") {
		documented = append(documented, ticked(r[0])...)
		if len(r) < 2 {
			t.Errorf("row %v has no action", r)
			continue
		}
		for _, a := range ticked(r[1]) {
			if _, ok := policy.LookupAction(a); camel.MatchString(a) && !ok {
				t.Errorf("docs/dataplane.md: %s is authorized as %s, which is no action", r[0], a)
			}
		}
	}
	slices.Sort(documented)
	if !slices.Equal(documented, rpcs) {
		t.Errorf("docs/dataplane.md's operations table lists\n  %v\nbut kms.proto has\n  %v", documented, rpcs)
	}
}

// docs/access-control.md's table of actions has one row per action of the
// table, saying the same: who checks it, its RBAC verbs, whether a grant
// may give it, and which shipped roles hold its verb.
func TestDocsListTheActions(t *testing.T) {
	rows := tableRows(t, section(t, "docs/access-control.md", "## Actions"), "action")
	documented := map[string][]string{}
	for _, r := range rows {
		if len(r) != 5 {
			t.Errorf("docs/access-control.md: row %v: want 5 cells (action, checked by, RBAC verb, in a KeyGrant, roles)", r)
			continue
		}
		names := ticked(r[0])
		if len(names) != 1 {
			t.Errorf("docs/access-control.md: row %v names %d actions", r, len(names))
			continue
		}
		documented[names[0]] = r
	}
	for _, a := range policy.Actions {
		r, ok := documented[a.Name]
		if !ok {
			t.Errorf("docs/access-control.md has no row for action %s", a.Name)
			continue
		}
		delete(documented, a.Name)
		kind := map[policy.ActionKind]string{policy.DataPlane: "data plane", policy.Admin: "admin webhook"}[a.Kind]
		if !strings.HasPrefix(r[1], kind) {
			t.Errorf("docs/access-control.md: %s is checked by %q, want %q", a.Name, r[1], kind)
		}
		verbs := []string{a.Verb}
		if a.DefaultPolicyVerb != "" {
			verbs = append(verbs, a.DefaultPolicyVerb)
		}
		if got := ticked(r[2]); !sameSet(got, verbs) {
			t.Errorf("docs/access-control.md: %s has verbs %v, want %v", a.Name, got, verbs)
		}
		if grant := map[bool]string{true: "yes", false: "no"}[a.Grantable]; r[3] != grant {
			t.Errorf("docs/access-control.md: %s in a KeyGrant: %q, want %q", a.Name, r[3], grant)
		}
		var roles []string
		for _, w := range ticked(r[4]) {
			if strings.HasPrefix(w, "kubekms-") {
				roles = append(roles, w)
			}
		}
		if !sameSet(roles, a.Roles) {
			t.Errorf("docs/access-control.md: %s is held by %v, want %v", a.Name, roles, a.Roles)
		}
	}
	for name := range documented {
		t.Errorf("docs/access-control.md has a row for %s, which is no action", name)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the part of a doc (a path from the repository root) from
// the line heading to the next heading of level 2 or higher.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	text := read(t, filepath.Join(repoRoot, doc))
	_, rest, ok := strings.Cut(text, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no section %q", doc, heading)
	}
	if i := regexp.MustCompile(`(?m)^#{1,2} `).FindStringIndex(rest); i != nil {
		rest = rest[:i[0]]
	}
	return rest
}

// tableRows returns the cells of the rows of the first table in text whose
// header's first cell is firstHeader, without its header and separator.
func tableRows(t *testing.T, text, firstHeader string) [][]string {
	t.Helper()
	var rows [][]string
	in := false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "|") {
			if in {
				break
			}
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case !in && cells[0] == firstHeader:
			in = true
		case in && !strings.HasPrefix(cells[0], "---"):
			rows = append(rows, cells)
		}
	}
	if len(rows) == 0 {
		t.Fatalf("no table with header %q in:\n%s", firstHeader, text)
	}
	return rows
}

// ticked returns the `code spans` of a cell.
func ticked(cell string) []string {
	var out []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cell, -1) {
		out = append(out, m[1])
	}
	return out
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Compact(slices.Sorted(slices.Values(a))), slices.Compact(slices.Sorted(slices.Values(b))))
}

// docs/architecture.md's package list names every package directory of
// internal/, cmd/ and test/ (and nothing that is not there), and README's
// layout section names every one of internal/: a newcomer reading either
// finds the tree as it is.
func TestDocsNameEveryPackage(t *testing.T) {
	var have []string
	for _, parent := range []string{"internal", "cmd", "test"} {
		entries, err := os.ReadDir(filepath.Join(repoRoot, parent))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() {
				have = append(have, parent+"/"+e.Name())
			}
		}
	}

	block := section(t, "docs/architecture.md", "## The packages")
	_, block, _ = strings.Cut(block, "```\n")
	block, _, _ = strings.Cut(block, "```")
	var documented []string
	for _, line := range strings.Split(block, "\n") {
		// "internal/quota, audit   token buckets…": the names run up to
		// the first two spaces; a bare name shares the previous one's parent.
		names, _, _ := strings.Cut(strings.TrimSpace(line), "  ")
		parent := ""
		for _, n := range strings.Split(names, ", ") {
			n = strings.TrimSuffix(strings.TrimSpace(n), "/")
			if dir, _, ok := strings.Cut(n, "/"); ok {
				parent = dir
			} else if parent != "" {
				n = parent + "/" + n
			}
			if n == "" || strings.Contains(n, " ") {
				continue
			}
			if _, err := os.Stat(filepath.Join(repoRoot, n)); err != nil {
				t.Errorf("docs/architecture.md names %s, which does not exist", n)
			}
			if d, _, _ := strings.Cut(n, "/"); slices.Contains([]string{"internal", "cmd", "test"}, d) {
				documented = append(documented, n)
			}
		}
	}
	for _, dir := range have {
		if !slices.Contains(documented, dir) {
			t.Errorf("docs/architecture.md does not name %s", dir)
		}
	}

	layout := section(t, "README.md", "## Layout")
	for _, dir := range have {
		if name, ok := strings.CutPrefix(dir, "internal/"); ok && !regexp.MustCompile(`\b`+name+`\b`).MatchString(layout) {
			t.Errorf("README's layout section does not name internal/%s", name)
		}
	}
}

// docs/install.md's manager flags table names every flag the manager has
// (controller-runtime's zap logging flags as one row, --zap-*).
func TestDocsListTheManagerFlags(t *testing.T) {
	out, _ := exec.Command("go", "run", "../../cmd/manager", "--help").CombinedOutput()
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		if !strings.HasPrefix(m[1], "zap-") {
			flags = append(flags, m[1])
		}
	}
	if len(flags) < 10 {
		t.Fatalf("manager --help listed %d flags:\n%s", len(flags), out)
	}
	table := section(t, "docs/install.md", "## Manager flags")
	var documented []string
	for _, r := range tableRows(t, table, "flag") {
		for _, f := range ticked(r[0]) {
			documented = append(documented, strings.TrimPrefix(f, "--"))
		}
	}
	for _, f := range flags {
		if !slices.Contains(documented, f) {
			t.Errorf("docs/install.md's manager flags table does not name --%s", f)
		}
	}
	for _, f := range documented {
		if f != "zap-*" && !slices.Contains(flags, f) {
			t.Errorf("docs/install.md names --%s, which the manager does not have", f)
		}
	}
}
