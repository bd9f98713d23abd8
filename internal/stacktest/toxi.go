package stacktest

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

// Upstream names one of the stack's servers that a Toxiproxy proxy can stand in front of.
type Upstream string

const (
	// Mongo is FerretDB (MONGO_URI).
	Mongo Upstream = "mongo"
	// S3 is SeaweedFS's S3 endpoint, which is also its STS endpoint: a proxy in front of it
	// carries both (AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_STS).
	S3 Upstream = "s3"
	// STS is the same SeaweedFS endpoint, given to the worker as AWS_ENDPOINT_URL_STS only, so
	// that AssumeRole can be faulted while S3 itself is left alone.
	STS Upstream = "sts"
	// SQS is local-aws-sqs (AWS_ENDPOINT_URL_SQS). The SDK sends every SQS call to the endpoint
	// (the queue URL is only a parameter of the call), so queue URLs need no rewriting.
	SQS Upstream = "sqs"
)

// Upstreams are all the kinds of upstream, in a fixed order.
var Upstreams = []Upstream{Mongo, S3, STS, SQS}

// ToxiProxy is a Toxiproxy proxy of one's own in front of one of the stack's servers, listening
// on a free loopback port. The embedded client proxy gives the whole Toxiproxy API
// (AddToxic, UpdateToxic, RemoveToxic, Toxics, Disable, Enable, ...); the methods below give the
// addresses a client or the worker should use to go through it.
type ToxiProxy struct {
	*toxiproxy.Proxy
	Upstream Upstream
	Addr     string // host:port the proxy listens on

	env   map[string]string // the stack's env, for the URI's other parts
	mu    sync.Mutex
	count int // toxics added by Inject, for names
}

// ToxiClient is a client of the stack's Toxiproxy API (TOXIPROXY_URL in .stack/env).
func ToxiClient(env map[string]string) (*toxiproxy.Client, error) {
	u := env["TOXIPROXY_URL"]
	if u == "" {
		return nil, fmt.Errorf("stacktest: TOXIPROXY_URL is not in .stack/env: restart the stack (scripts/stack.sh stop && scripts/stack.sh start) so that it starts Toxiproxy")
	}
	return toxiproxy.NewClient(u), nil
}

// UpstreamAddr is the host:port of the stack's server u.
func UpstreamAddr(env map[string]string, u Upstream) (string, error) {
	var raw string
	switch u {
	case Mongo:
		raw = env["MONGO_URI"]
	case S3:
		raw = env["AWS_ENDPOINT_URL_S3"]
	case STS:
		raw = env["AWS_ENDPOINT_URL_STS"]
	case SQS:
		raw = env["AWS_ENDPOINT_URL_SQS"]
	default:
		return "", fmt.Errorf("stacktest: unknown upstream %q", u)
	}
	parsed, err := url.Parse(raw)
	if err != nil || parsed.Host == "" {
		return "", fmt.Errorf("stacktest: no address for %s in .stack/env (%q)", u, raw)
	}
	host := parsed.Host
	if strings.Contains(host, ",") {
		return "", fmt.Errorf("stacktest: %s has several hosts (%q); a proxy stands in front of one", u, raw)
	}
	if parsed.Port() == "" {
		switch {
		case u == Mongo:
			host += ":27017"
		case parsed.Scheme == "https":
			host += ":443"
		default:
			host += ":80"
		}
	}
	return host, nil
}

// NewToxiProxy creates a proxy named name in front of the stack's server u, listening on a free
// loopback port. The caller deletes it (Delete) when done; see Stack.Proxy for tests.
func NewToxiProxy(client *toxiproxy.Client, env map[string]string, name string, u Upstream) (*ToxiProxy, error) {
	upstream, err := UpstreamAddr(env, u)
	if err != nil {
		return nil, err
	}
	p, err := client.CreateProxy(name, "127.0.0.1:0", upstream)
	if err != nil {
		return nil, fmt.Errorf("stacktest: create proxy %s in front of %s (%s): %w", name, u, upstream, err)
	}
	return &ToxiProxy{Proxy: p, Upstream: u, Addr: p.Listen, env: env}, nil
}

// Proxy gives the test its own Toxiproxy proxy in front of the stack's server u, deleted when
// the test ends.
//
//	p := st.Proxy(t, stacktest.Mongo)
//	client := mongo.Connect(options.Client().ApplyURI(p.MongoURI()))
//	p.Inject(t, "latency", "downstream", toxiproxy.Attributes{"latency": 200})
func (st *Stack) Proxy(t testing.TB, u Upstream) *ToxiProxy {
	t.Helper()
	client, err := ToxiClient(st.Env)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewToxiProxy(client, st.Env, "t-"+RandomID()+"-"+string(u), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Delete(); err != nil {
			t.Logf("stacktest: delete proxy %s: %v", p.Name, err)
		}
	})
	return p
}

// URL is the address a client uses to go through the proxy: MongoURI for Mongo, Endpoint for
// the others.
func (p *ToxiProxy) URL() string {
	if p.Upstream == Mongo {
		return p.MongoURI()
	}
	return p.Endpoint()
}

// MongoURI is the stack's MONGO_URI with its host replaced by the proxy, and
// directConnection=true: the driver talks to the address it was given instead of one a server
// might announce.
func (p *ToxiProxy) MongoURI() string {
	u, err := url.Parse(p.env["MONGO_URI"])
	if err != nil || u.Host == "" {
		u = &url.URL{Scheme: "mongodb", Path: "/"}
	}
	u.Host = p.Addr
	if u.Path == "" {
		u.Path = "/"
	}
	q := u.Query()
	q.Set("directConnection", "true")
	u.RawQuery = q.Encode()
	return u.String()
}

// Endpoint is the HTTP endpoint through the proxy (for AWS_ENDPOINT_URL_*). SigV4 signs the
// Host header the client dials, which is the proxy's, and SeaweedFS and local-aws-sqs check the
// signature against the Host they receive, which is the same: signing needs nothing special.
func (p *ToxiProxy) Endpoint() string {
	return "http://" + p.Addr
}

// Env is the worker environment that sends this upstream's traffic through the proxy:
// MONGO_URI, AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL_STS alone, or
// AWS_ENDPOINT_URL_SQS.
func (p *ToxiProxy) Env() map[string]string {
	switch p.Upstream {
	case Mongo:
		return map[string]string{"MONGO_URI": p.MongoURI()}
	case S3:
		return map[string]string{"AWS_ENDPOINT_URL_S3": p.Endpoint(), "AWS_ENDPOINT_URL_STS": p.Endpoint()}
	case STS:
		return map[string]string{"AWS_ENDPOINT_URL_STS": p.Endpoint()}
	case SQS:
		return map[string]string{"AWS_ENDPOINT_URL_SQS": p.Endpoint()}
	}
	return nil
}

// ProxyEnv merges the Env of several proxies and then extra (later wins), for
// Stack.WorkerEnv: st.WorkerEnv(stacktest.ProxyEnv(extra, pMongo, pS3, pSQS)). A STS proxy
// given after an S3 proxy takes STS from it.
func ProxyEnv(extra map[string]string, proxies ...*ToxiProxy) map[string]string {
	env := map[string]string{}
	for _, p := range proxies {
		for k, v := range p.Env() {
			env[k] = v
		}
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// Toxic adds a toxic of type typ ("latency", "bandwidth", "slow_close", "timeout",
// "reset_peer", "slicer", "limit_data") on stream ("upstream": client to server, or
// "downstream") with toxicity 1, and returns its name.
func (p *ToxiProxy) Toxic(typ, stream string, attrs toxiproxy.Attributes) (string, error) {
	p.mu.Lock()
	p.count++
	name := fmt.Sprintf("%s_%s_%d", typ, stream, p.count)
	p.mu.Unlock()
	if _, err := p.AddToxic(name, typ, stream, 1, attrs); err != nil {
		return "", fmt.Errorf("stacktest: add toxic %s to %s: %w", name, p.Name, err)
	}
	return name, nil
}

// Inject is Toxic for tests: it fails the test on error.
func (p *ToxiProxy) Inject(t testing.TB, typ, stream string, attrs toxiproxy.Attributes) string {
	t.Helper()
	name, err := p.Toxic(typ, stream, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// Heal removes every toxic of the proxy and enables it if it was disabled.
func (p *ToxiProxy) Heal() error {
	toxics, err := p.Toxics()
	if err != nil {
		return fmt.Errorf("stacktest: toxics of %s: %w", p.Name, err)
	}
	for _, tx := range toxics {
		if err := p.RemoveToxic(tx.Name); err != nil {
			return fmt.Errorf("stacktest: remove toxic %s of %s: %w", tx.Name, p.Name, err)
		}
	}
	if !p.Enabled {
		if err := p.Enable(); err != nil {
			return fmt.Errorf("stacktest: enable %s: %w", p.Name, err)
		}
	}
	return nil
}

// Cut disables the proxy: open connections are closed and new ones refused, as when the server
// goes away. Restore (or Heal) enables it again.
func (p *ToxiProxy) Cut(t testing.TB) {
	t.Helper()
	if err := p.Disable(); err != nil {
		t.Fatalf("stacktest: disable %s: %v", p.Name, err)
	}
}

// Restore enables the proxy again after Cut.
func (p *ToxiProxy) Restore(t testing.TB) {
	t.Helper()
	if err := p.Enable(); err != nil {
		t.Fatalf("stacktest: enable %s: %v", p.Name, err)
	}
}
