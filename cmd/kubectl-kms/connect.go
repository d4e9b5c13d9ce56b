package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/kubekms/kubekms/internal/kmsclient"
)

// connection flags, shared by every data-plane command.
type connection struct {
	kube           *genericclioptions.ConfigFlags
	address        string
	caFile         string
	insecure       bool
	token          string
	serviceAccount string
	kmsNamespace   string
	timeout        time.Duration

	stopForward func()
}

const (
	managerSelector = "app.kubernetes.io/name=kubekms,app.kubernetes.io/component=manager"
	dataplanePort   = "50051"
	caConfigMap     = "kubekms-ca.crt"
)

// namespace is the namespace kubectl would use (-n, or the context's).
func (c *connection) namespace() (string, error) {
	ns, _, err := c.kube.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// client dials the data plane: the address and CA from flags or
// KUBEKMS_ADDRESS/KUBEKMS_CA_FILE, else through a port-forward to a ready
// manager pod, trusting the CA the cluster publishes.
func (c *connection) client(ctx context.Context) (*kmsclient.Client, error) {
	cfg := kmsclient.Config{
		Address:  firstOf(c.address, os.Getenv("KUBEKMS_ADDRESS")),
		CAFile:   firstOf(c.caFile, os.Getenv("KUBEKMS_CA_FILE")),
		Insecure: c.insecure,
		Retry:    kmsclient.Retry{Budget: c.timeout},
	}
	token, err := c.tokenSource(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Token = token
	if cfg.Address == "" {
		if err := c.portForward(ctx, &cfg); err != nil {
			return nil, fmt.Errorf("no KUBEKMS_ADDRESS, and reaching kubekms through the API server failed: %w", err)
		}
	}
	return kmsclient.New(cfg)
}

// tokenSource picks the caller's token: --kms-token or KUBEKMS_TOKEN; else
// a short-lived token requested for --service-account (audience kubekms);
// else the kubeconfig's bearer token. A token the CLI did not request
// itself is sent only if it was minted for kubekms (mintedForKubekms): a
// kubeconfig token is usually a credential for the whole API server, and
// the data plane (or whatever listens at --address) must never get one.
func (c *connection) tokenSource(ctx context.Context) (kmsclient.TokenSource, error) {
	if t := firstOf(c.token, os.Getenv("KUBEKMS_TOKEN")); t != "" {
		if why := mintedForKubekms(t); why != "" {
			return nil, fmt.Errorf("refusing to send the token of --kms-token (or $KUBEKMS_TOKEN): %s. "+
				"Mint one for kubekms: kubectl create token SERVICEACCOUNT --audience kubekms, or pass --service-account SERVICEACCOUNT instead", why)
		}
		return kmsclient.StaticToken(t), nil
	}
	restConfig, err := c.kube.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	if c.serviceAccount != "" {
		ns, err := c.namespace()
		if err != nil {
			return nil, err
		}
		cs, err := kubernetes.NewForConfig(restConfig)
		if err != nil {
			return nil, err
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, c.serviceAccount, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{kmsAudience}, ExpirationSeconds: new(int64(600))},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("request a token for ServiceAccount %s/%s: %w", ns, c.serviceAccount, err)
		}
		return kmsclient.StaticToken(tr.Status.Token), nil
	}
	token := restConfig.BearerToken
	if token == "" && restConfig.BearerTokenFile != "" {
		b, err := os.ReadFile(restConfig.BearerTokenFile)
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, errors.New("no token: pass --service-account SERVICEACCOUNT (a token with audience kubekms is requested for it) or --kms-token with a token minted for audience kubekms")
	}
	if why := mintedForKubekms(token); why != "" {
		return nil, fmt.Errorf("refusing to send the kubeconfig's bearer token to kubekms: %s, so it is a credential for the API server, not for kubekms. "+
			"Pass --service-account SERVICEACCOUNT to act as a ServiceAccount of the namespace (the CLI requests a 10-minute token with audience kubekms for it), "+
			"or --kms-token with a token minted for audience kubekms (kubectl create token SERVICEACCOUNT --audience kubekms)", why)
	}
	return kmsclient.StaticToken(token), nil
}

// kmsAudience is the audience a token for the data plane carries.
const kmsAudience = "kubekms"

// mintedForKubekms says why a token is not one to send to kubekms, or ""
// when it is: a JWT whose aud claim names kubekms. The claim is read without
// verifying the signature; this only decides whether to send the token (the
// service verifies it). A token that is not a JWT cannot show an audience,
// so it is not sent either.
func mintedForKubekms(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "it is not a JWT, so it cannot show that it was minted for audience kubekms"
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "it is not a JWT, so it cannot show that it was minted for audience kubekms"
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "it is not a JWT, so it cannot show that it was minted for audience kubekms"
	}
	var auds []string
	if err := json.Unmarshal(claims.Aud, &auds); err != nil {
		var one string
		if json.Unmarshal(claims.Aud, &one) == nil && one != "" {
			auds = []string{one}
		}
	}
	switch {
	case slices.Contains(auds, kmsAudience):
		return ""
	case len(auds) == 0:
		return "it names no audience"
	}
	return fmt.Sprintf("its audience is %s, not %s", strings.Join(auds, ", "), kmsAudience)
}

// portForward reaches a ready manager pod through the API server, as
// kubectl port-forward does, and trusts the CA the cluster publishes.
func (c *connection) portForward(ctx context.Context, cfg *kmsclient.Config) error {
	restConfig, err := c.kube.ToRESTConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	pod, err := readyManagerPod(ctx, cs, c.kmsNamespace)
	if err != nil {
		return err
	}
	cm, err := cs.CoreV1().ConfigMaps(c.kmsNamespace).Get(ctx, caConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the CA (ConfigMap %s/%s): %w", c.kmsNamespace, caConfigMap, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"])) {
		return fmt.Errorf("ConfigMap %s/%s holds no CA certificate", c.kmsNamespace, caConfigMap)
	}
	local, stop, err := forward(restConfig, cs, c.kmsNamespace, pod)
	if err != nil {
		return err
	}
	c.stopForward = stop
	cfg.Address, cfg.RootCAs, cfg.ServerName = local, pool, "kubekms."+c.kmsNamespace+".svc"
	return nil
}

// readyManagerPod names a ready, not terminating manager pod in ns: any
// replica serves the data plane.
func readyManagerPod(ctx context.Context, cs kubernetes.Interface, ns string) (string, error) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: managerSelector})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				return p.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no ready kubekms manager pod (%s) in namespace %s", managerSelector, ns)
}

// forward port-forwards a free local port on 127.0.0.1 to the data-plane
// port of pod, and returns its address and how to stop it.
func forward(restConfig *rest.Config, cs kubernetes.Interface, ns, pod string) (string, func(), error) {
	transport, upgrader, err := spdy.RoundTripperFor(restConfig)
	if err != nil {
		return "", nil, err
	}
	url := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + dataplanePort}, stop, ready, io.Discard, os.Stderr)
	if err != nil {
		return "", nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		return "", nil, fmt.Errorf("port-forward to %s/%s: %w", ns, pod, err)
	case <-time.After(30 * time.Second):
		close(stop)
		return "", nil, fmt.Errorf("port-forward to %s/%s did not become ready", ns, pod)
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		close(stop)
		return "", nil, fmt.Errorf("port-forward to %s/%s: no local port", ns, pod)
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[0].Local)), func() { close(stop) }, nil
}

// run dials, runs fn, and closes.
func (c *connection) run(cmd *cobra.Command, fn func(ctx context.Context, kms *kmsclient.Client) error) error {
	ctx := cmd.Context()
	kms, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	defer kms.Close()
	return fn(ctx, kms)
}

// close stops the port-forward, if the connection opened one.
func (c *connection) close() {
	if c.stopForward != nil {
		c.stopForward()
	}
}

// firstOf returns the first non-empty value: a flag before its
// environment variable.
func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
