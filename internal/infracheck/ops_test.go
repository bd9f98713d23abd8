package infracheck

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	"go.yaml.in/yaml/v3"

	"github.com/verifiedfan/export-service/internal/logging"
)

// The promises of the operations document this service was specified from that are kept in
// infra/ and the deploy pipeline: retention of the exported files, the DNS name over HTTPS
// with a Route 53 health check, campaigns.service, DEBUG='titan*', and the pre-deploy
// index step.

// --- Retention -----------------------------------------------------------------------------

// lifecycleRules returns the rules of the exports bucket's one lifecycle configuration by id.
func lifecycleRules(t *testing.T, m *module) (*hclsyntax.Block, map[string]*hclsyntax.Block) {
	t.Helper()
	var confs []*hclsyntax.Block
	for _, b := range m.blocksOf("resource", "aws_s3_bucket_lifecycle_configuration") {
		if slices.Contains(refs(attr(t, b, "bucket").Expr), "aws_s3_bucket.exports.id") {
			confs = append(confs, b)
		}
	}
	// S3 keeps one lifecycle configuration per bucket: a second resource would replace the
	// first one's rules on every apply, in turn.
	if len(confs) != 1 {
		t.Fatalf("%d aws_s3_bucket_lifecycle_configuration resources on the exports bucket, want exactly 1", len(confs))
	}
	rules := map[string]*hclsyntax.Block{}
	for _, r := range nested(confs[0], "rule") {
		id := literal(t, r, "id").AsString()
		if rules[id] != nil {
			t.Errorf("lifecycle rule id %q appears twice", id)
		}
		rules[id] = r
		wantString(t, r, "status", "Enabled")
	}
	return confs[0], rules
}

// Exported objects and their manifests (KEY.manifest.json, beside KEY) expire after
// exports_retention_days (default 30, at least 1); the versioned bucket's noncurrent versions
// follow, and the abort-incomplete-multipart-upload rule stays in the same configuration.
func TestBucketRetention(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	_, rules := lifecycleRules(t, m)

	exp, ok := rules["expire-exports"]
	if !ok {
		t.Fatal(`no lifecycle rule "expire-exports"`)
	}
	e := one(t, exp, "expiration")
	if got := m.text(attr(t, e, "days").Expr); got != "var.exports_retention_days" {
		t.Errorf("expire-exports expiration days = %s, want var.exports_retention_days", got)
	}
	// Both the object and its manifest live under the internal prefix.
	if got := m.text(attr(t, one(t, exp, "filter"), "prefix").Expr); got != "var.internal_prefix" {
		t.Errorf("expire-exports filter prefix = %s, want var.internal_prefix (objects and manifests)", got)
	}
	v := m.block(t, "variable", "exports_retention_days")
	wantNumber(t, v, "default", 30)
	if cond := m.text(attr(t, one(t, v, "validation"), "condition").Expr); !strings.Contains(cond, "var.exports_retention_days >= 1") {
		t.Errorf("variable exports_retention_days: validation %q does not require at least 1 day", cond)
	}

	// The bucket is versioned (TestBucketLifecycleAbortsMultipartUploads checks it): an expired
	// object becomes a noncurrent version, which must go too.
	nc, ok := rules["expire-noncurrent-versions"]
	if !ok {
		t.Fatal(`no lifecycle rule "expire-noncurrent-versions" on the versioned bucket`)
	}
	if got := m.text(attr(t, one(t, nc, "noncurrent_version_expiration"), "noncurrent_days").Expr); got != "var.noncurrent_version_retention_days" {
		t.Errorf("noncurrent_days = %s, want var.noncurrent_version_retention_days", got)
	}
	if f := one(t, nc, "filter"); len(f.Body.Attributes)+len(f.Body.Blocks) != 0 {
		t.Error("the noncurrent-version rule must cover the whole bucket (filter {})")
	}
	dm, ok := rules["remove-expired-delete-markers"]
	if !ok {
		t.Fatal(`no lifecycle rule "remove-expired-delete-markers"`)
	}
	dme := one(t, dm, "expiration")
	wantBool(t, dme, "expired_object_delete_marker", true)
	if _, ok := dme.Body.Attributes["days"]; ok {
		t.Error("expired_object_delete_marker cannot share an expiration with days (S3 refuses it)")
	}

	// The abort rule is in the same configuration (TestBucketLifecycleAbortsMultipartUploads
	// checks its days).
	abort, ok := rules["abort-incomplete-multipart-uploads"]
	if !ok || len(nested(abort, "abort_incomplete_multipart_upload")) != 1 {
		t.Error("the abort-incomplete-multipart-uploads rule is gone from the lifecycle configuration")
	}

	// Every environment's value is a whole number of days, at least 1.
	for _, env := range envNames(t) {
		for _, name := range []string{"exports_retention_days", "noncurrent_version_retention_days"} {
			if d, ok := loadTFVars(t, env)[name]; ok {
				if d.Type() != cty.Number {
					t.Errorf("env/%s.tfvars: %s is not a number", env, name)
					continue
				}
				if n, acc := d.AsBigFloat().Int64(); acc != 0 || n < 1 {
					t.Errorf("env/%s.tfvars: %s = %s, want a whole number >= 1", env, name, d.AsBigFloat().String())
				}
			}
		}
	}
}

// envNames lists the environments of infra/terraform/env/*.tfvars.
func envNames(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "infra", "terraform", "env", "*.tfvars"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no env/*.tfvars (err %v)", err)
	}
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".tfvars"))
	}
	return out
}

// --- DNS name, HTTPS, Route 53 health check ------------------------------------------------

// dnsResources are the optional resources of the DNS name, by type and name.
var dnsResources = [][3]string{
	{"data", "aws_route53_zone", "service"},
	{"resource", "aws_acm_certificate", "service"},
	{"resource", "aws_route53_record", "certificate_validation"},
	{"resource", "aws_acm_certificate_validation", "service"},
	{"resource", "aws_load_balancer_policy", "tls"},
	{"resource", "aws_load_balancer_listener_policy", "https"},
	{"resource", "aws_route53_record", "service"},
	{"resource", "aws_cloudwatch_metric_alarm", "no_healthy_host"},
	{"resource", "aws_route53_health_check", "service"},
}

// evalGate evaluates a count or for_each expression that depends on local.dns_enabled, with
// var.dns_zone_id set to zoneID.
func evalGate(t *testing.T, m *module, e hclsyntax.Expression, zoneID string) cty.Value {
	t.Helper()
	vars := cty.ObjectVal(map[string]cty.Value{
		"dns_zone_id":    cty.StringVal(zoneID),
		"internal_cidrs": cty.ListVal([]cty.Value{cty.StringVal("10.0.0.0/8")}),
	})
	enabled, diags := m.locals["dns_enabled"].Value(&hcl.EvalContext{Variables: map[string]cty.Value{"var": vars}})
	if diags.HasErrors() {
		t.Fatalf("local.dns_enabled: %s", diags.Error())
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": vars, "local": cty.ObjectVal(map[string]cty.Value{"dns_enabled": enabled})},
		Functions: map[string]function.Function{"toset": stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType))},
	}
	v, diags := e.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", m.text(e), diags.Error())
	}
	return v
}

func gateSize(t *testing.T, v cty.Value) int {
	t.Helper()
	if v.Type() == cty.Number {
		n, _ := v.AsBigFloat().Int64()
		return int(n)
	}
	return v.LengthInt()
}

// The DNS name, its certificate, the HTTPS listener and the Route 53 health check exist only
// when var.dns_zone_id names a zone: none by default, none in the example environments.
func TestDNSAndHTTPSAreOptional(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	wantString(t, m.block(t, "variable", "dns_zone_id"), "default", "")
	if got := m.text(m.locals["dns_enabled"]); got != `var.dns_zone_id != ""` {
		t.Fatalf(`local.dns_enabled = %s, want var.dns_zone_id != ""`, got)
	}

	type gated struct {
		what string
		expr hclsyntax.Expression
	}
	var gates []gated
	for _, r := range dnsResources {
		b := m.block(t, r[0], r[1], r[2])
		gates = append(gates, gated{strings.Join(r[1:], "."), attr(t, b, "count").Expr})
	}
	elb := m.block(t, "resource", "aws_elb", "this")
	var https *hclsyntax.Block
	for _, d := range nested(elb, "dynamic") {
		if slices.Equal(d.Labels, []string{"listener"}) {
			https = d
		}
	}
	if https == nil {
		t.Fatal("aws_elb.this has no dynamic listener for HTTPS")
	}
	gates = append(gates, gated{"the ELB's HTTPS listener", attr(t, https, "for_each").Expr})
	gates = append(gates, gated{"the ELB's 443 ingress", attr(t, m.block(t, "resource", "aws_vpc_security_group_ingress_rule", "elb_https"), "for_each").Expr})

	defaultZone := literal(t, m.block(t, "variable", "dns_zone_id"), "default").AsString()
	for _, g := range gates {
		if n := gateSize(t, evalGate(t, m, g.expr, defaultZone)); n != 0 {
			t.Errorf("%s: %d instances with the default dns_zone_id, want none", g.what, n)
		}
		if n := gateSize(t, evalGate(t, m, g.expr, "Z0123456789ABCDEFGHIJ")); n != 1 {
			t.Errorf("%s: %d instances with a zone, want 1", g.what, n)
		}
		for _, env := range envNames(t) {
			zone := ""
			if z, ok := loadTFVars(t, env)["dns_zone_id"]; ok {
				zone = z.AsString()
			}
			want := 0
			if zone != "" {
				want = 1
			}
			if n := gateSize(t, evalGate(t, m, g.expr, zone)); n != want {
				t.Errorf("env/%s.tfvars: %s has %d instances, want %d", env, g.what, n, want)
			}
		}
	}

	// HTTPS 443 on the ELB, TLS ended there, forwarded to the worker's HTTP 8080, with the
	// validated certificate and TLS 1.2 and up.
	c := one(t, https, "content")
	wantString(t, c, "lb_protocol", "https")
	wantNumber(t, c, "instance_port", 8080)
	wantString(t, c, "instance_protocol", "http")
	if got := refs(attr(t, c, "ssl_certificate_id").Expr); !slices.Contains(got, "aws_acm_certificate_validation.service") {
		t.Errorf("HTTPS listener certificate refers to %v, want the validated ACM certificate", got)
	}
	if v := evalGate(t, m, attr(t, https, "for_each").Expr, "Z1"); v.LengthInt() != 1 || !v.Index(cty.NumberIntVal(0)).RawEquals(cty.NumberIntVal(443)) {
		t.Errorf("HTTPS listener for_each = %#v with a zone, want [443] (lb_port)", v)
	}
	if got := m.text(attr(t, c, "lb_port").Expr); got != "listener.value" {
		t.Errorf("HTTPS listener lb_port = %s, want listener.value (443)", got)
	}
	wantString(t, m.block(t, "resource", "aws_acm_certificate", "service"), "validation_method", "DNS")
	lp := m.block(t, "resource", "aws_load_balancer_listener_policy", "https")
	wantNumber(t, lp, "load_balancer_port", 443)
	wantString(t, m.block(t, "variable", "elb_tls_policy"), "default", "ELBSecurityPolicy-TLS-1-2-2017-01")

	// The name points at the ELB.
	rec := m.block(t, "resource", "aws_route53_record", "service")
	wantString(t, rec, "type", "A")
	al := one(t, rec, "alias")
	if got := refs(attr(t, al, "name").Expr); !slices.Equal(got, []string{"aws_elb.this.dns_name"}) {
		t.Errorf("alias name refers to %v, want aws_elb.this.dns_name", got)
	}
	if got := refs(attr(t, al, "zone_id").Expr); !slices.Equal(got, []string{"aws_elb.this.zone_id"}) {
		t.Errorf("alias zone_id refers to %v, want aws_elb.this.zone_id", got)
	}

	// Route 53's health checkers are on the internet and cannot reach an internal ELB: while
	// the ELB is internal, every Route 53 health check follows a CloudWatch alarm, here the one
	// on the ELB's HealthyHostCount (instances answering its GET /heartbeat).
	wantBool(t, elb, "internal", true)
	for _, hc := range m.blocksOf("resource", "aws_route53_health_check") {
		wantString(t, hc, "type", "CLOUDWATCH_METRIC")
	}
	hc := m.block(t, "resource", "aws_route53_health_check", "service")
	if got := refs(attr(t, hc, "cloudwatch_alarm_name").Expr); !slices.Equal(got, []string{"aws_cloudwatch_metric_alarm.no_healthy_host.alarm_name"}) {
		t.Errorf("health check alarm refers to %v, want aws_cloudwatch_metric_alarm.no_healthy_host", got)
	}
	alarm := m.block(t, "resource", "aws_cloudwatch_metric_alarm", "no_healthy_host")
	wantString(t, alarm, "namespace", "AWS/ELB")
	wantString(t, alarm, "metric_name", "HealthyHostCount")
	if got := refs(attr(t, alarm, "dimensions").Expr); !slices.Equal(got, []string{"local.elb_dimensions"}) {
		t.Errorf("no_healthy_host dimensions = %v, want the ELB's", got)
	}
	if hcTarget := m.text(attr(t, one(t, elb, "health_check"), "target").Expr); !strings.Contains(hcTarget, "/heartbeat") {
		t.Errorf("the ELB health check target %s is not /heartbeat", hcTarget)
	}

	for _, name := range []string{"dns_name", "https_heartbeat_url", "certificate_arn", "route53_health_check_id"} {
		m.block(t, "output", name)
	}
}

// --- campaigns.service ----------------------------------------------------------------------

// base64gzip is OpenTofu's function of that name, for rendering the Ignition template.
var base64gzip = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write([]byte(args[0].AsString())); err != nil {
			return cty.NilVal, err
		}
		if err := zw.Close(); err != nil {
			return cty.NilVal, err
		}
		return cty.StringVal(base64.StdEncoding.EncodeToString(buf.Bytes())), nil
	},
})

// The runbooks' `systemctl status campaigns.service` works on the hosts: Ignition writes the
// symlink /etc/systemd/system/campaigns.service -> vf-export.service, which systemd treats as
// an alias of the unit (no enablement or preset involved).
func TestRunbookUnitNameIsAnAlias(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	linksExpr, ok := m.locals["links"]
	if !ok {
		t.Fatal("userdata.tf has no local links")
	}
	links, diags := linksExpr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("local.links is not a literal: %s", diags.Error())
	}
	ud := readFile(t, "infra", "terraform", "userdata.tf")
	if !strings.Contains(ud, "links = local.links") {
		t.Error("userdata.tf does not pass local.links to the Ignition template")
	}

	// Render the Ignition template with one unit and the links, and read the JSON back.
	src := readFile(t, "infra", "terraform", "templates", "ignition.json.tftpl")
	tmpl, diags := hclsyntax.ParseTemplate([]byte(src), "ignition.json.tftpl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("ignition.json.tftpl: %s", diags.Error())
	}
	unit := cty.ObjectVal(map[string]cty.Value{
		"name": cty.StringVal("vf-export.service"), "enabled": cty.True, "contents": cty.StringVal("[Service]\n"),
	})
	out, diags := tmpl.Value(&hcl.EvalContext{
		Variables: map[string]cty.Value{
			"files": cty.EmptyTupleVal,
			"units": cty.TupleVal([]cty.Value{unit}),
			"links": links,
		},
		Functions: map[string]function.Function{"jsonencode": stdlib.JSONEncodeFunc, "base64gzip": base64gzip, "concat": stdlib.ConcatFunc},
	})
	if diags.HasErrors() {
		t.Fatalf("rendering ignition.json.tftpl: %s", diags.Error())
	}
	var ign struct {
		Ignition struct{ Version string }
		Storage  struct {
			Files []struct{ Path string }
			Links []struct {
				Path, Target string
				Hard         *bool
			}
		}
		Systemd struct{ Units []struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(out.AsString()), &ign); err != nil {
		t.Fatalf("rendered Ignition config is not JSON: %v", err)
	}
	if ign.Ignition.Version != "3.3.0" {
		t.Errorf("Ignition spec %q, want 3.3.0 (storage.links as used here)", ign.Ignition.Version)
	}
	found := false
	for _, l := range ign.Storage.Links {
		if l.Path != "/etc/systemd/system/campaigns.service" {
			continue
		}
		found = true
		if l.Target != "/etc/systemd/system/vf-export.service" {
			t.Errorf("campaigns.service links to %q, want /etc/systemd/system/vf-export.service", l.Target)
		}
		if l.Hard == nil || *l.Hard {
			t.Error("campaigns.service must be a symbolic link (hard = false): systemd takes only symlinks as aliases")
		}
		for _, f := range ign.Storage.Files {
			if f.Path == l.Path {
				t.Errorf("%s is both a file and a link", l.Path)
			}
		}
	}
	if !found {
		t.Error("the Ignition config has no link /etc/systemd/system/campaigns.service")
	}
	// The alias is not also an [Install] Alias= (a second writer of the same symlink).
	if strings.Contains(readFile(t, "infra", "terraform", "templates", "vf-export.service.tftpl"), "\nAlias=") {
		t.Error("vf-export.service.tftpl sets Alias= as well as the Ignition link")
	}
}

// --- DEBUG ----------------------------------------------------------------------------------

// DEBUG='titan*' in every environment, as the operations document has it: the variable's
// default and each env file turn on the debug lines of the service's components.
func TestDebugInEveryEnvironment(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	if !strings.Contains(readFile(t, "infra", "terraform", "templates", "vf-export.env.tftpl"), "\nDEBUG=${debug}\n") {
		t.Error("vf-export.env.tftpl does not set DEBUG=${debug}")
	}
	values := map[string]string{"variable debug default": literal(t, m.block(t, "variable", "debug"), "default").AsString()}
	for _, env := range envNames(t) {
		if v, ok := loadTFVars(t, env)["debug"]; ok {
			values["env/"+env+".tfvars"] = v.AsString()
		}
	}
	for where, v := range values {
		for _, c := range []string{"titan:main", "titan:worker", "titan:export", "titan:queues"} {
			if !logging.NewMatcher(v).Match(c) {
				t.Errorf("%s: DEBUG=%q does not cover %s", where, v, c)
			}
		}
	}
}

// --- Pre-deploy index step --------------------------------------------------------------------

type taskfile struct {
	Tasks map[string]struct {
		Deps []any `yaml:"deps"`
		Cmds []any `yaml:"cmds"`
	} `yaml:"tasks"`
}

// cmdText renders a Taskfile cmd: "task:NAME" for a task call, else the command.
func cmdText(c any) string {
	switch v := c.(type) {
	case string:
		return v
	case map[string]any:
		if name, ok := v["task"].(string); ok {
			return "task:" + name
		}
		if cmd, ok := v["cmd"].(string); ok {
			return cmd
		}
	}
	return ""
}

// The operations document's createMongoIndexes pre-deploy step: the deploy runs
// `export-service indexes` against the environment's database before tofu apply rolls out
// the new launch template, in the Taskfile and in the CI workflow alike.
func TestDeployCreatesIndexesBeforeApply(t *testing.T) {
	t.Parallel()
	var tf taskfile
	if err := yaml.Unmarshal([]byte(readFile(t, "Taskfile.yml")), &tf); err != nil {
		t.Fatalf("Taskfile.yml: %v", err)
	}
	deploy, ok := tf.Tasks["deploy"]
	if !ok {
		t.Fatal("Taskfile.yml has no deploy task")
	}
	// deps run in parallel, before cmds: the order must come from cmds alone.
	for _, d := range deploy.Deps {
		t.Errorf("deploy has deps (%v): they run in parallel; call the steps in cmds, in order", d)
	}
	idx, apply := -1, -1
	for i, c := range deploy.Cmds {
		switch cmdText(c) {
		case "task:deploy:indexes":
			idx = i
		case "task:deploy:apply":
			apply = i
		}
	}
	if idx < 0 || apply < 0 || idx > apply {
		t.Errorf("deploy runs deploy:indexes at step %d and deploy:apply at step %d; want the indexes first", idx, apply)
	}
	var idxCmds, applyCmds []string
	for _, c := range tf.Tasks["deploy:indexes"].Cmds {
		idxCmds = append(idxCmds, cmdText(c))
	}
	for _, c := range tf.Tasks["deploy:apply"].Cmds {
		applyCmds = append(applyCmds, cmdText(c))
	}
	if !slices.ContainsFunc(idxCmds, func(s string) bool { return strings.Contains(s, "{{.IMAGE}} indexes") }) {
		t.Errorf("deploy:indexes does not run the release image's indexes command: %q", idxCmds)
	}
	if !slices.ContainsFunc(applyCmds, func(s string) bool {
		return strings.Contains(s, " apply ") && strings.Contains(s, "-var image={{.IMAGE}}")
	}) {
		t.Errorf("deploy:apply does not run tofu apply with the image: %q", applyCmds)
	}

	// CI: the apply job needs the index job.
	var wf struct {
		Jobs map[string]struct {
			Needs any `yaml:"needs"`
			Steps []struct {
				Run string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, ".github", "workflows", "deploy.yml")), &wf); err != nil {
		t.Fatalf(".github/workflows/deploy.yml: %v", err)
	}
	runs := func(job, what string) bool {
		for _, s := range wf.Jobs[job].Steps {
			if strings.Contains(s.Run, what) {
				return true
			}
		}
		return false
	}
	if !runs("create-mongo-indexes", "task deploy:indexes") {
		t.Error("the create-mongo-indexes job does not run deploy:indexes")
	}
	for name, job := range wf.Jobs {
		if !runs(name, "apply") { // "apply" is a substring of "deploy:apply"
			continue
		}
		if name == "create-mongo-indexes" {
			continue
		}
		var needs []string
		switch n := job.Needs.(type) {
		case string:
			needs = []string{n}
		case []any:
			for _, x := range n {
				s, _ := x.(string)
				needs = append(needs, s)
			}
		}
		if !slices.Contains(needs, "create-mongo-indexes") {
			t.Errorf("job %s applies the Terraform without needs: create-mongo-indexes (needs %v)", name, needs)
		}
	}
	if !runs("apply", "task deploy:apply") {
		t.Error("the workflow has no apply job running deploy:apply")
	}
}
