package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The agent as a process (there is no kubelet here): the pod's annotations
// in the downward API's file format, a real projected-style token with
// audience kubekms, and its ServiceAccount's own rights to read Secrets.
const agentNS = "agent-e2e"

const agentManifest = `apiVersion: v1
kind: Namespace
metadata: {name: agent-e2e}
---
apiVersion: kms.kubekms.io/v1alpha1
kind: Key
metadata: {name: app, namespace: agent-e2e}
---
apiVersion: kms.kubekms.io/v1alpha1
kind: Key
metadata: {name: other, namespace: agent-e2e}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: agent-e2e}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ci, namespace: agent-e2e}
---
# What the agent of web's pods may read: only the sources its pods name.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web-kms-sources, namespace: agent-e2e}
rules:
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [db-creds]
  verbs: [get, watch]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [app-config]
  verbs: [get, watch]
- apiGroups: [kms.kubekms.io]
  resources: [keys]
  resourceNames: [app]
  verbs: [decrypt]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web-kms-sources, namespace: agent-e2e}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web-kms-sources}
subjects: [{kind: ServiceAccount, name: web, namespace: agent-e2e}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci-encrypts, namespace: agent-e2e}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubekms-key-user}
subjects: [{kind: ServiceAccount, name: ci, namespace: agent-e2e}]
`

// proxy forwards TCP to the data plane and can be taken down and back up on
// the same address: the service "briefly down" as a client sees it.
type proxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func (p *proxy) up() {
	GinkgoHelper()
	var err error
	Eventually(func() error { p.ln, err = net.Listen("tcp", p.addr); return err }, "5s").Should(Succeed())
	p.addr = p.ln.Addr().String()
	go func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}(p.ln)
}

func (p *proxy) down() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// agentUsage is a process's resident memory and the share of one core it
// used over window, from /proc.
func agentUsage(pid int, window time.Duration) (rss int64, cpu float64) {
	GinkgoHelper()
	ticks := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		Expect(err).NotTo(HaveOccurred())
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		return u + s
	}
	before := ticks()
	time.Sleep(window)
	used := ticks() - before
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return rss, float64(used) / 100 / window.Seconds() // USER_HZ is 100 on Linux
}

func agentSpecs() {
	var (
		agentBin string
		work     string
	)

	// encryptAs makes a ciphertext with the CLI, as a ServiceAccount.
	encryptAs := func(ns, sa, key, plaintext, context string) string {
		GinkgoHelper()
		secretsSeen = append(secretsSeen, plaintext)
		out, err := userShell("", fmt.Sprintf("echo -n %q | kubectl kms encrypt --key %s -n %s --service-account %s -e %q\n",
			plaintext, key, ns, sa, context)).Output()
		Expect(err).NotTo(HaveOccurred(), string(out))
		return strings.TrimSpace(string(out))
	}
	encrypt := func(key, plaintext, context string) string { return encryptAs(agentNS, "ci", key, plaintext, context) }

	// annotationsFile writes annotations as the downward API does.
	annotationsFile := func(a map[string]string) string {
		GinkgoHelper()
		var b strings.Builder
		for k, v := range a {
			fmt.Fprintf(&b, "%s=%s\n", k, strconv.Quote(v))
		}
		f := filepath.Join(GinkgoT().TempDir(), "annotations")
		Expect(os.WriteFile(f, []byte(b.String()), 0o600)).To(Succeed())
		return f
	}

	// credentials writes the kms token (audience kubekms) and a kubeconfig
	// that is the ServiceAccount (default audience), as the pod would have.
	credentials := func(ns, sa string) (tokenFile, kc string) {
		GinkgoHelper()
		dir := GinkgoT().TempDir()
		kmsToken, err := kubectl("create", "token", sa, "-n", ns, "--audience", "kubekms", "--duration", "1h")
		Expect(err).NotTo(HaveOccurred(), kmsToken)
		apiToken, err := kubectl("create", "token", sa, "-n", ns, "--duration", "1h")
		Expect(err).NotTo(HaveOccurred(), apiToken)
		secretsSeen = append(secretsSeen, strings.TrimSpace(kmsToken), strings.TrimSpace(apiToken))
		tokenFile = filepath.Join(dir, "token")
		Expect(os.WriteFile(tokenFile, []byte(kmsToken), 0o600)).To(Succeed())
		cfg, err := clientcmd.LoadFromFile(kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		cfg.AuthInfos = map[string]*clientcmdapi.AuthInfo{"sa": {Token: strings.TrimSpace(apiToken)}}
		for _, c := range cfg.Contexts {
			c.AuthInfo = "sa"
		}
		kc = filepath.Join(dir, "kubeconfig")
		Expect(clientcmd.WriteToFile(*cfg, kc)).To(Succeed())
		return tokenFile, kc
	}

	startAgent := func(ns, annotations, tokenFile, kc, address, dir string, extra ...string) *gexec.Session {
		GinkgoHelper()
		s, err := gexec.Start(exec.Command(agentBin, append([]string{
			"--annotations-file", annotations, "--dir", dir, "--token-file", tokenFile, "--kubeconfig", kc,
			"--namespace", ns, "--address", address, "--ca-file", filepath.Join(devDir, "ca.crt"),
			"--init-timeout", "90s",
		}, extra...)...), GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		return s
	}

	readFile := func(dir, name string) func() string {
		return func() string {
			b, _ := os.ReadFile(filepath.Join(dir, name))
			return string(b)
		}
	}

	It("sets up a namespace whose pods read decrypted files (agent-e2e)", func() {
		var err error
		agentBin, err = gexec.Build("github.com/kubekms/kubekms/cmd/agent")
		Expect(err).NotTo(HaveOccurred())
		work = GinkgoT().TempDir()
		out, err := kubectl("apply", "-f", filepath.Join(repoRoot, "config", "rbac", "kms_roles.yaml"))
		Expect(err).NotTo(HaveOccurred(), out)
		applyYAML(agentManifest)
		waitKeyEnabled(agentNS, "app")
		waitKeyEnabled(agentNS, "other")
	})

	It("writes every file atomically with mode 0400, follows Secret changes, keeps the old file on a tampered value, and rides out the service going down", func() {
		db1 := encrypt("app", "db password one", "app=web")
		api := encrypt("app", "api key", "app=web")
		inline := encrypt("app", "inline value", "app=web")
		out, err := kubectl("create", "secret", "generic", "db-creds", "-n", agentNS, "--from-literal=password="+db1)
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = kubectl("create", "configmap", "app-config", "-n", agentNS, "--from-literal=api="+api)
		Expect(err).NotTo(HaveOccurred(), out)

		annotations := annotationsFile(map[string]string{
			"kms.kubekms.io/inject":         "true",
			"kms.kubekms.io/secret-db":      "secret/db-creds/password",
			"kms.kubekms.io/context-db":     "app=web",
			"kms.kubekms.io/secret-api":     "configmap/app-config/api",
			"kms.kubekms.io/context-api":    "app=web",
			"kms.kubekms.io/secret-inline":  inline,
			"kms.kubekms.io/context-inline": "app=web",
			// Also as an environment variable, through the exec wrapper.
			"kms.kubekms.io/env-API_KEY":         "configmap/app-config/api",
			"kms.kubekms.io/context-env-API_KEY": "app=web",
		})
		tokenFile, kc := credentials(agentNS, "web")
		p := &proxy{addr: "127.0.0.1:0", target: dataplane}
		p.up()
		dir := filepath.Join(work, "secrets")
		bin := filepath.Join(work, "bin")
		agent := startAgent(agentNS, annotations, tokenFile, kc, p.addr, dir, "--bin-dir", bin)
		DeferCleanup(func() { agent.Terminate().Wait(10 * time.Second) })

		Eventually(func() error { return exec.Command(agentBin, "ready", "--dir", dir).Run() }, "30s").Should(Succeed(), "the startup probe passes")
		Expect(readFile(dir, "db")()).To(Equal("db password one"))
		Expect(readFile(dir, "api")()).To(Equal("api key"))
		Expect(readFile(dir, "inline")()).To(Equal("inline value"))
		Expect(readFile(dir, "env-API_KEY")()).To(Equal("api key"))

		By("the exec wrapper, copied where app containers can run it, puts the value in the environment")
		wrapper := filepath.Join(bin, "kubekms-agent")
		Expect(wrapper).To(BeAnExistingFile())
		env, err := exec.Command(wrapper, "exec", "--dir", dir, "--env", "API_KEY=env-API_KEY", "--", "sh", "-c", `printf %s "$API_KEY"`).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(env))
		Expect(string(env)).To(Equal("api key"))

		info, err := os.Stat(filepath.Join(dir, "db"))
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o400)))

		By("measuring the agent at idle (reported, not asserted)")
		rss, cpu := agentUsage(agent.Command.Process.Pid, 5*time.Second)
		AddReportEntry("agent idle", fmt.Sprintf("RSS %.1f MiB, CPU %.2f%% of one core over 5s", float64(rss)/(1<<20), cpu*100))

		By("a reader in a loop while the Secret changes never sees a partial or unknown value")
		valid := map[string]bool{"db password one": true, "db password two": true}
		var stop atomic.Bool
		var reads atomic.Int64
		var bad atomic.Value
		done := make(chan struct{})
		go func() {
			defer close(done)
			for !stop.Load() {
				b, err := os.ReadFile(filepath.Join(dir, "db"))
				if err != nil || !valid[string(b)] {
					bad.Store(fmt.Sprintf("%q %v", b, err))
					return
				}
				reads.Add(1)
			}
		}()
		db2 := encrypt("app", "db password two", "app=web")
		out, err = kubectl("patch", "secret", "db-creds", "-n", agentNS, "-p", fmt.Sprintf(`{"stringData":{"password":%q}}`, db2))
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(readFile(dir, "db"), "10s").Should(Equal("db password two"), "the file follows the Secret within seconds")
		stop.Store(true)
		<-done
		Expect(bad.Load()).To(BeNil())
		Expect(reads.Load()).To(BeNumerically(">", 0))

		By("a tampered value is an error that names the file; the previous file stays")
		tampered := []byte(db2)
		tampered[len(tampered)-5] ^= 0x01
		out, err = kubectl("patch", "secret", "db-creds", "-n", agentNS, "-p", fmt.Sprintf(`{"stringData":{"password":%q}}`, string(tampered)))
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(agent.Err, "10s").Should(gbytes.Say(`file db \(from secret/db-creds/password\)`))
		Consistently(readFile(dir, "db"), "2s").Should(Equal("db password two"))

		By("the service down: the files stay; back up: the change arrives")
		p.down()
		db3 := encrypt("app", "db password three", "app=web")
		out, err = kubectl("patch", "secret", "db-creds", "-n", agentNS, "-p", fmt.Sprintf(`{"stringData":{"password":%q}}`, db3))
		Expect(err).NotTo(HaveOccurred(), out)
		Consistently(readFile(dir, "db"), "3s").Should(Equal("db password two"))
		Expect(readFile(dir, "api")()).To(Equal("api key"))
		p.up()
		Eventually(readFile(dir, "db"), "60s").Should(Equal("db password three"))
		Expect(readFile(dir, "inline")()).To(Equal("inline value"))
		Expect(agent.ExitCode()).To(Equal(-1), "the sidecar keeps running")

		logs := string(agent.Out.Contents()) + string(agent.Err.Contents())
		Expect(logs).NotTo(ContainSubstring("Could not watch"), "a Role with resourceNames allows the narrowed watch")
		for _, s := range append([]string{"db password", "api key", "inline value"}, secretsSeen...) {
			Expect(logs).NotTo(ContainSubstring(s), "the agent never logs plaintext or tokens")
		}
	})

	It("in init mode exits 0 once everything is written, even throttled, and non-zero naming the file when a key is denied", func() {
		annotations := map[string]string{"kms.kubekms.io/inject": "true", "kms.kubekms.io/mode": "init"}
		for i := range 8 {
			name := fmt.Sprintf("v%d", i)
			annotations["kms.kubekms.io/secret-"+name] = encrypt("app", "value "+name, "app=web")
			annotations["kms.kubekms.io/context-"+name] = "app=web"
		}
		tokenFile, kc := credentials(agentNS, "web")
		dir := filepath.Join(work, "init")
		s := startAgent(agentNS, annotationsFile(annotations), tokenFile, kc, dataplane, dir)
		Eventually(s, "60s").Should(gexec.Exit(0))
		Expect(readFile(dir, "v7")()).To(Equal("value v7"))

		By("a key web may not use")
		denied := map[string]string{"kms.kubekms.io/inject": "true", "kms.kubekms.io/mode": "init",
			"kms.kubekms.io/secret-ok": annotations["kms.kubekms.io/secret-v0"], "kms.kubekms.io/context-ok": "app=web",
			"kms.kubekms.io/secret-nope": encrypt("other", "not for web", "app=web"), "kms.kubekms.io/context-nope": "app=web"}
		s = startAgent(agentNS, annotationsFile(denied), tokenFile, kc, dataplane, filepath.Join(work, "denied"))
		Eventually(s, "30s").Should(gexec.Exit())
		Expect(s.ExitCode()).NotTo(BeZero())
		Expect(string(s.Err.Contents())).To(ContainSubstring("file nope (from inline ciphertext)"))
		Expect(string(s.Err.Contents())).To(ContainSubstring("PermissionDenied"))
		Expect(filepath.Join(work, "denied", "ok")).NotTo(BeAnExistingFile(), "nothing is written unless everything is")

		By("throttled: 8 files at a quota of 2 per second")
		applyYAML(throttledManifest)
		waitKeyEnabled("kms-throttled", "k")
		ct := encryptAs("kms-throttled", "app", "k", "throttled value", "app=agent")
		many := map[string]string{"kms.kubekms.io/inject": "true", "kms.kubekms.io/mode": "init"}
		for i := range 8 {
			many[fmt.Sprintf("kms.kubekms.io/secret-t%d", i)] = ct
			many[fmt.Sprintf("kms.kubekms.io/context-t%d", i)] = "app=agent"
		}
		throttledSoFar := func() int {
			auditLog, err := os.ReadFile(filepath.Join(devDir, "audit.log"))
			Expect(err).NotTo(HaveOccurred())
			n := 0
			for _, line := range strings.Split(string(auditLog), "\n") {
				if strings.Contains(line, `"sourceNamespace":"kms-throttled"`) && strings.Contains(line, `"eventName":"Decrypt"`) &&
					strings.Contains(line, `"errorCode":"ThrottlingException"`) {
					n++
				}
			}
			return n
		}
		before := throttledSoFar()
		tokenFile, kc = credentials("kms-throttled", "app")
		dir = filepath.Join(work, "throttled")
		s = startAgent("kms-throttled", annotationsFile(many), tokenFile, kc, dataplane, dir)
		Eventually(s, "90s").Should(gexec.Exit(0))
		for i := range 8 {
			Expect(readFile(dir, fmt.Sprintf("t%d", i))()).To(Equal("throttled value"))
		}
		Expect(bytes.Contains(s.Err.Contents(), []byte("throttled value"))).To(BeFalse())
		Expect(throttledSoFar()).To(BeNumerically(">", before), "the service throttled the agent, and it backed off and finished")
	})
}
