package agent

import (
	"strings"
	"testing"
)

func TestParseAnnotations(t *testing.T) {
	base := func(extra map[string]string) map[string]string {
		a := map[string]string{
			AnnotationInject:                 "true",
			AnnotationSecretPrefix + "db":    "secret/db-creds/password",
			AnnotationSecretPrefix + "token": "kms:v1:AAAA",
			AnnotationSecretPrefix + "cfg":   "configmap/app/settings.json",
		}
		for k, v := range extra {
			if v == "-" {
				delete(a, k)
			} else {
				a[k] = v
			}
		}
		return a
	}
	env, err := ParseAnnotations(base(map[string]string{AnnotationEnvPrefix + "API_KEY": "kms:v1:AA", AnnotationContextPrefix + "env-API_KEY": "a=b"}))
	if err != nil || len(env.Env) != 1 || env.Env[0] != (EnvVar{Name: "API_KEY", File: "env-API_KEY"}) || !env.Wraps() {
		t.Fatalf("env: %+v, %v", env.Env, err)
	}
	if env.Files[2].Name != "env-API_KEY" || env.Files[2].Context["a"] != "b" {
		t.Fatalf("the env value is a file with its context: %+v", env.Files)
	}
	cfg, err := ParseAnnotations(base(map[string]string{AnnotationContextPrefix + "db": "app=shop, tier=db"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != ModeSidecar || cfg.MountPath != DefaultMountPath || cfg.FileMode != 0o400 {
		t.Fatalf("defaults: %+v", cfg)
	}
	names := []string{}
	for _, f := range cfg.Files {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "cfg,db,token" {
		t.Fatalf("files = %v, want sorted cfg,db,token", names)
	}
	db := cfg.Files[1]
	if db.Source != (Source{Kind: SourceSecret, Name: "db-creds", Key: "password"}) || db.Context["app"] != "shop" || db.Context["tier"] != "db" {
		t.Fatalf("db = %+v", db)
	}
	if cfg.Files[2].Source.Kind != SourceInline || cfg.Files[0].Source.Kind != SourceConfigMap {
		t.Fatalf("kinds: %+v", cfg.Files)
	}

	for name, tc := range map[string]struct {
		extra map[string]string
		want  string
	}{
		"bad source":            {map[string]string{AnnotationSecretPrefix + "x": "vault:secret/x"}, "annotation kms.kubekms.io/secret-x: \"vault:secret/x\" is not secret/<name>/<key>"},
		"bad secret name":       {map[string]string{AnnotationSecretPrefix + "x": "secret/Bad_Name/k"}, "annotation kms.kubekms.io/secret-x: \"Bad_Name\" is not a valid secret name"},
		"file name with dots":   {map[string]string{AnnotationSecretPrefix + "..data": "kms:v1:AA"}, "annotation kms.kubekms.io/secret-..data: \"..data\" is not a file name"},
		"context without file":  {map[string]string{AnnotationContextPrefix + "nope": "a=b"}, "annotation kms.kubekms.io/context-nope: there is no kms.kubekms.io/secret-nope"},
		"bad context":           {map[string]string{AnnotationContextPrefix + "db": "justakey"}, "annotation kms.kubekms.io/context-db: \"justakey\" is not k=v,k2=v2"},
		"duplicate context key": {map[string]string{AnnotationContextPrefix + "db": "a=1,a=2"}, `key "a" appears twice`},
		"bad mode":              {map[string]string{AnnotationMode: "daemon"}, "annotation kms.kubekms.io/mode: \"daemon\" is not \"sidecar\" or \"init\""},
		"relative mount path":   {map[string]string{AnnotationMountPath: "secrets"}, "annotation kms.kubekms.io/mount-path"},
		"file mode":             {map[string]string{AnnotationFileMode: "0200"}, "annotation kms.kubekms.io/file-mode: \"0200\""},
		"run as user":           {map[string]string{AnnotationRunAsUser: "root"}, "annotation kms.kubekms.io/run-as-user: \"root\" is not a user ID"},
		"memory":                {map[string]string{AnnotationMemoryLimit: "lots"}, "annotation kms.kubekms.io/agent-memory-limit: \"lots\" is not a quantity"},
		"env name":              {map[string]string{AnnotationEnvPrefix + "1X": "kms:v1:AA"}, "annotation kms.kubekms.io/env-1X: \"1X\" is not an environment variable name"},
		"env and file clash":    {map[string]string{AnnotationEnvPrefix + "X": "kms:v1:AA", AnnotationSecretPrefix + "env-X": "kms:v1:AA"}, "file env-X is also named by kms.kubekms.io/secret-env-X"},
		"reload signal":         {map[string]string{AnnotationReloadSignal: "SIGKILL"}, "annotation kms.kubekms.io/reload-signal: \"SIGKILL\" is not one of"},
		"exec containers alone": {map[string]string{AnnotationExecContainers: "app"}, "names containers to wrap, but there is no kms.kubekms.io/env-<VAR> or kms.kubekms.io/reload-signal"},
		"no files": {map[string]string{AnnotationSecretPrefix + "db": "-", AnnotationSecretPrefix + "token": "-",
			AnnotationSecretPrefix + "cfg": "-"}, "names no file to write"},
	} {
		_, err := ParseAnnotations(base(tc.extra))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestParseAnnotationsFile(t *testing.T) {
	// As the kubelet writes metadata.annotations: sorted, values quoted.
	data := "kms.kubekms.io/context-db=\"app=shop\"\nkms.kubekms.io/inject=\"true\"\nnote=\"line1\\nline2 \\\"q\\\"\"\n"
	a, err := ParseAnnotationsFile([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if a["kms.kubekms.io/context-db"] != "app=shop" || a["note"] != "line1\nline2 \"q\"" || len(a) != 3 {
		t.Fatalf("got %q", a)
	}
	if _, err := ParseAnnotationsFile([]byte("a=unquoted\n")); err == nil || !strings.Contains(err.Error(), "line 1 (a)") {
		t.Fatalf("unquoted: %v", err)
	}
}
