// Package agent is the workload agent: it decrypts the values a pod names
// in its kms.kubekms.io annotations and writes them as files in a memory
// volume. The annotations are its whole configuration; the injecting webhook
// validates them with the same parser (ParseAnnotations), so a pod that is
// admitted has a configuration the agent accepts.
package agent

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Annotations of a pod that asks for injection.
const (
	// AnnotationInject: "true" asks for the agent.
	AnnotationInject = "kms.kubekms.io/inject"
	// AnnotationMode: "sidecar" (default; a native sidecar that keeps the
	// files current) or "init" (a plain init container that writes them once,
	// for Jobs).
	AnnotationMode = "kms.kubekms.io/mode"
	// AnnotationMountPath is where app containers see the files (default
	// DefaultMountPath).
	AnnotationMountPath = "kms.kubekms.io/mount-path"
	// AnnotationSecretPrefix + <file>: the source of one file.
	AnnotationSecretPrefix = "kms.kubekms.io/secret-"
	// AnnotationContextPrefix + <file>: its encryption context, k=v,k2=v2.
	AnnotationContextPrefix = "kms.kubekms.io/context-"
	// AnnotationFileMode is the files' mode, octal (default 0400).
	AnnotationFileMode = "kms.kubekms.io/file-mode"
	// AnnotationRunAsUser is the UID the agent runs as, and so the files'
	// owner (default: the first app container's runAsUser, else the pod's).
	AnnotationRunAsUser = "kms.kubekms.io/run-as-user"
	// AnnotationEnvPrefix + <VAR>: a value the exec wrapper puts in the
	// environment of the wrapped containers. Its encryption context is
	// kms.kubekms.io/context-env-<VAR>; it is also written as file env-<VAR>.
	AnnotationEnvPrefix = "kms.kubekms.io/env-"
	// AnnotationExecContainers names the containers the exec wrapper runs
	// (comma-separated; default: the first container).
	AnnotationExecContainers = "kms.kubekms.io/exec-containers"
	// AnnotationReloadSignal is sent to the wrapped process when the files change.
	AnnotationReloadSignal = "kms.kubekms.io/reload-signal"
	// Agent resources for this pod, overriding the cluster-wide defaults.
	AnnotationCPURequest    = "kms.kubekms.io/agent-cpu-request"
	AnnotationMemoryRequest = "kms.kubekms.io/agent-memory-request"
	AnnotationCPULimit      = "kms.kubekms.io/agent-cpu-limit"
	AnnotationMemoryLimit   = "kms.kubekms.io/agent-memory-limit"

	// DefaultMountPath is where app containers see the files.
	DefaultMountPath = "/var/run/kubekms/secrets"
	// DefaultFileMode: readable by the owner only.
	DefaultFileMode os.FileMode = 0o400

	ModeSidecar = "sidecar"
	ModeInit    = "init"
)

// SourceKind says where a file's ciphertext is.
type SourceKind string

const (
	SourceSecret    SourceKind = "secret"
	SourceConfigMap SourceKind = "configmap"
	SourceInline    SourceKind = "inline"
)

// Source is where one file's ciphertext comes from.
type Source struct {
	Kind SourceKind
	// Name and Key of the Secret or ConfigMap in the pod's namespace.
	Name, Key string
	// Inline is the ciphertext itself (kms:v1:... or kms:env1:...).
	Inline string
}

func (s Source) String() string {
	if s.Kind == SourceInline {
		return "inline ciphertext"
	}
	return fmt.Sprintf("%s/%s/%s", s.Kind, s.Name, s.Key)
}

// File is one file the agent writes.
type File struct {
	Name    string
	Source  Source
	Context map[string]string
}

// Config is what the agent does for one pod.
type Config struct {
	Mode      string
	MountPath string
	FileMode  os.FileMode
	// RunAsUser, when set, is the agent's UID.
	RunAsUser *int64
	// Files, sorted by name (environment values included, as env-<VAR>).
	Files []File
	// Env maps environment variables to the files that hold them; when it is
	// not empty, or ReloadSignal is set, ExecContainers run under the wrapper.
	Env            []EnvVar
	ExecContainers []string
	ReloadSignal   string
	// Resources named by annotations (empty when not set).
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
}

// EnvVar is an environment variable the exec wrapper sets from a file.
type EnvVar struct {
	Name, File string
}

// Wraps says whether app containers run under the exec wrapper.
func (c Config) Wraps() bool { return len(c.Env) > 0 || c.ReloadSignal != "" }

var (
	fileName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ParseAnnotations reads a pod's kms.kubekms.io annotations. Every error
// names the annotation that is wrong and says what is expected.
func ParseAnnotations(a map[string]string) (Config, error) {
	c := Config{Mode: ModeSidecar, MountPath: DefaultMountPath, FileMode: DefaultFileMode}
	bad := func(name, format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("annotation %s: %s", name, fmt.Sprintf(format, args...))
	}
	if v, ok := a[AnnotationMode]; ok {
		if v != ModeSidecar && v != ModeInit {
			return bad(AnnotationMode, "%q is not %q or %q", v, ModeSidecar, ModeInit)
		}
		c.Mode = v
	}
	if v, ok := a[AnnotationMountPath]; ok {
		if !strings.HasPrefix(v, "/") || strings.Contains(v, "..") || strings.ContainsAny(v, ":\n") || len(v) > 1024 {
			return bad(AnnotationMountPath, "%q is not an absolute path without '..' or ':'", v)
		}
		c.MountPath = v
	}
	if v, ok := a[AnnotationFileMode]; ok {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m > 0o777 || m&0o400 == 0 {
			return bad(AnnotationFileMode, "%q is not an octal file mode between 0400 and 0777 that the owner can read", v)
		}
		c.FileMode = os.FileMode(m)
	}
	if v, ok := a[AnnotationRunAsUser]; ok {
		uid, err := strconv.ParseInt(v, 10, 64)
		if err != nil || uid < 0 || uid > 1<<31-1 {
			return bad(AnnotationRunAsUser, "%q is not a user ID", v)
		}
		c.RunAsUser = &uid
	}
	for name, dst := range map[string]*string{
		AnnotationCPURequest: &c.CPURequest, AnnotationMemoryRequest: &c.MemoryRequest,
		AnnotationCPULimit: &c.CPULimit, AnnotationMemoryLimit: &c.MemoryLimit,
	} {
		if v, ok := a[name]; ok {
			if _, err := resource.ParseQuantity(v); err != nil {
				return bad(name, "%q is not a quantity (like 10m or 16Mi)", v)
			}
			*dst = v
		}
	}

	for _, name := range slices.Sorted(maps.Keys(a)) {
		file, ok := strings.CutPrefix(name, AnnotationSecretPrefix)
		if v, env := strings.CutPrefix(name, AnnotationEnvPrefix); env {
			if !envName.MatchString(v) {
				return bad(name, "%q is not an environment variable name", v)
			}
			file, ok = "env-"+v, true
			if _, dup := a[AnnotationSecretPrefix+file]; dup {
				return bad(name, "file %s is also named by %s%s", file, AnnotationSecretPrefix, file)
			}
			c.Env = append(c.Env, EnvVar{Name: v, File: file})
		}
		if !ok {
			continue
		}
		if !fileName.MatchString(file) || len(validation.IsConfigMapKey(file)) > 0 {
			return bad(name, "%q is not a file name (letters, digits, '.', '_', '-'; not starting with '.')", file)
		}
		src, err := ParseSource(a[name])
		if err != nil {
			return bad(name, "%v", err)
		}
		f := File{Name: file, Source: src}
		if ec, ok := a[AnnotationContextPrefix+file]; ok {
			if f.Context, err = ParseContext(ec); err != nil {
				return bad(AnnotationContextPrefix+file, "%v", err)
			}
		}
		c.Files = append(c.Files, f)
	}
	for name := range a {
		if file, ok := strings.CutPrefix(name, AnnotationContextPrefix); ok && !slices.ContainsFunc(c.Files, func(f File) bool { return f.Name == file }) {
			return bad(name, "there is no %s%s for it", AnnotationSecretPrefix, file)
		}
	}
	if len(c.Files) == 0 {
		return bad(AnnotationSecretPrefix+"<file>", "the pod asks for injection but names no file to write")
	}
	slices.SortFunc(c.Files, func(x, y File) int { return strings.Compare(x.Name, y.Name) })
	if v, ok := a[AnnotationReloadSignal]; ok {
		if _, err := ParseSignal(v); err != nil {
			return bad(AnnotationReloadSignal, "%v", err)
		}
		c.ReloadSignal = v
	}
	if v, ok := a[AnnotationExecContainers]; ok {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); len(validation.IsDNS1123Label(name)) > 0 {
				return bad(AnnotationExecContainers, "%q is not a container name", name)
			}
			c.ExecContainers = append(c.ExecContainers, name)
		}
		if !c.Wraps() {
			return bad(AnnotationExecContainers, "names containers to wrap, but there is no %s<VAR> or %s", AnnotationEnvPrefix, AnnotationReloadSignal)
		}
	}
	return c, nil
}

// ParseSource parses secret/<name>/<key>, configmap/<name>/<key> or an
// inline kms:v1:... or kms:env1:... ciphertext.
func ParseSource(s string) (Source, error) {
	if strings.HasPrefix(s, "kms:v1:") || strings.HasPrefix(s, "kms:env1:") {
		return Source{Kind: SourceInline, Inline: s}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) == 3 && (parts[0] == string(SourceSecret) || parts[0] == string(SourceConfigMap)) {
		if errs := validation.IsDNS1123Subdomain(parts[1]); len(errs) > 0 {
			return Source{}, fmt.Errorf("%q is not a valid %s name: %s", parts[1], parts[0], errs[0])
		}
		if errs := validation.IsConfigMapKey(parts[2]); len(errs) > 0 {
			return Source{}, fmt.Errorf("%q is not a valid data key: %s", parts[2], errs[0])
		}
		return Source{Kind: SourceKind(parts[0]), Name: parts[1], Key: parts[2]}, nil
	}
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return Source{}, fmt.Errorf("%q is not secret/<name>/<key>, configmap/<name>/<key> or an inline kms:v1:... ciphertext", s)
}

// ParseContext parses an encryption context written k=v,k2=v2.
func ParseContext(s string) (map[string]string, error) {
	out := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not k=v,k2=v2", s)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("key %q appears twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// ParseAnnotationsFile reads the downward API's annotations file
// (key="quoted value" per line), as the injected agent sees it.
func ParseAnnotationsFile(data []byte) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, quoted, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("annotations file line %d: no '='", i+1)
		}
		v, err := strconv.Unquote(quoted)
		if err != nil {
			return nil, fmt.Errorf("annotations file line %d (%s): the value is not a quoted string", i+1, k)
		}
		out[k] = v
	}
	return out, nil
}

// Paths inside the agent container, as the webhook mounts them: the memory
// volume, and one projected volume with everything else the agent needs.
const (
	// AgentDir is where the agent writes (the memory volume).
	AgentDir = "/var/run/kubekms/agent/secrets"
	// PodDir holds the projected volume.
	PodDir = "/var/run/kubekms/agent/pod"
	// AnnotationsFile is the pod's annotations (downward API).
	AnnotationsFile = PodDir + "/annotations"
	// TokenFile is the projected token with audience kubekms.
	TokenFile = PodDir + "/token"
	// CAFile is the operator's CA (ConfigMap kubekms-ca.crt).
	CAFile = PodDir + "/kms-ca.crt"
	// APITokenFile and APICAFile reach the Kubernetes API as the pod's
	// ServiceAccount, whether or not the pod automounts its token.
	APITokenFile = PodDir + "/api-token"
	APICAFile    = PodDir + "/api-ca.crt"
)
