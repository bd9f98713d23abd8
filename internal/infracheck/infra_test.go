package infracheck

import (
	"bufio"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/verifiedfan/export-service/worker"
)

// repoRoot is where the tests find infra/ and docs/: two levels above this package.
var repoRoot = filepath.Join("..", "..")

// --- Terraform helpers -------------------------------------------------------------------

// module is the parsed top-level blocks of infra/terraform/*.tf and the source they came from.
type module struct {
	blocks []*hclsyntax.Block
	src    map[string][]byte // file name -> bytes, for source ranges
	locals map[string]hclsyntax.Expression
}

func loadModule(t *testing.T) *module {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "infra", "terraform", "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files under infra/terraform (err %v)", err)
	}
	p := hclparse.NewParser()
	m := &module{src: map[string][]byte{}, locals: map[string]hclsyntax.Expression{}}
	for _, f := range files {
		file, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", f, diags.Error())
		}
		body, ok := file.Body.(*hclsyntax.Body)
		if !ok {
			t.Fatalf("%s: not native HCL syntax", f)
		}
		m.src[f] = file.Bytes
		for _, b := range body.Blocks {
			m.blocks = append(m.blocks, b)
			if b.Type == "locals" {
				for name, a := range b.Body.Attributes {
					m.locals[name] = a.Expr
				}
			}
		}
	}
	return m
}

// block returns the one top-level block of the given type and labels.
func (m *module) block(t *testing.T, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	for _, b := range m.blocks {
		if b.Type == typ && slices.Equal(b.Labels, labels) {
			return b
		}
	}
	t.Fatalf("no %s %q in infra/terraform", typ, labels)
	return nil
}

// blocksOf returns every top-level block of a type whose first label is kind (any kind if "").
func (m *module) blocksOf(typ, kind string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocks {
		if b.Type == typ && (kind == "" || (len(b.Labels) > 0 && b.Labels[0] == kind)) {
			out = append(out, b)
		}
	}
	return out
}

// text is the source of an expression as written.
func (m *module) text(e hclsyntax.Expression) string {
	r := e.Range()
	src := m.src[r.Filename]
	if src == nil {
		return ""
	}
	return string(r.SliceBytes(src))
}

func nested(b *hclsyntax.Block, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, c := range b.Body.Blocks {
		if c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

func one(t *testing.T, b *hclsyntax.Block, typ string) *hclsyntax.Block {
	t.Helper()
	bs := nested(b, typ)
	if len(bs) != 1 {
		t.Fatalf("%s %v: want exactly one %s block, found %d", b.Type, b.Labels, typ, len(bs))
	}
	return bs[0]
}

func attr(t *testing.T, b *hclsyntax.Block, name string) *hclsyntax.Attribute {
	t.Helper()
	a, ok := b.Body.Attributes[name]
	if !ok {
		t.Fatalf("%s %v: no attribute %s", b.Type, b.Labels, name)
	}
	return a
}

// literal evaluates an attribute that must be a literal (no references, no functions).
func literal(t *testing.T, b *hclsyntax.Block, name string) cty.Value {
	t.Helper()
	a := attr(t, b, name)
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s %v: %s is not a literal: %s", b.Type, b.Labels, name, diags.Error())
	}
	return v
}

func wantString(t *testing.T, b *hclsyntax.Block, name, want string) {
	t.Helper()
	v := literal(t, b, name)
	if v.Type() != cty.String || v.AsString() != want {
		t.Errorf("%s %v: %s = %#v, want %q", b.Type, b.Labels, name, v, want)
	}
}

func wantNumber(t *testing.T, b *hclsyntax.Block, name string, want int64) {
	t.Helper()
	v := literal(t, b, name)
	if v.Type() != cty.Number {
		t.Errorf("%s %v: %s = %#v, want the number %d", b.Type, b.Labels, name, v, want)
		return
	}
	if got, acc := v.AsBigFloat().Int64(); acc != 0 || got != want {
		t.Errorf("%s %v: %s = %s, want %d", b.Type, b.Labels, name, v.AsBigFloat().String(), want)
	}
}

func wantBool(t *testing.T, b *hclsyntax.Block, name string, want bool) {
	t.Helper()
	v := literal(t, b, name)
	if v.Type() != cty.Bool || v.True() != want {
		t.Errorf("%s %v: %s = %#v, want %v", b.Type, b.Labels, name, v, want)
	}
}

// stringList evaluates a literal list of strings.
func stringList(t *testing.T, b *hclsyntax.Block, name string) []string {
	t.Helper()
	v := literal(t, b, name)
	if !v.CanIterateElements() {
		t.Fatalf("%s %v: %s is not a list", b.Type, b.Labels, name)
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.Type() != cty.String {
			t.Fatalf("%s %v: %s has a non-string element %#v", b.Type, b.Labels, name, e)
		}
		out = append(out, e.AsString())
	}
	return out
}

// refName renders a traversal such as var.sfmc_role_arn or aws_sqs_queue.jobs.arn.
func refName(tr hcl.Traversal) string {
	parts := []string{tr.RootName()}
	for _, step := range tr[1:] {
		if a, ok := step.(hcl.TraverseAttr); ok {
			parts = append(parts, a.Name)
		}
	}
	return strings.Join(parts, ".")
}

// refs lists the references an expression makes, rendered by refName.
func refs(e hclsyntax.Expression) []string {
	var out []string
	for _, tr := range e.Variables() {
		out = append(out, refName(tr))
	}
	sort.Strings(out)
	return out
}

// varRoots follows an expression through locals (and, for each.*, through forEach) to the
// input variables it depends on.
func (m *module) varRoots(e hclsyntax.Expression, forEach hclsyntax.Expression, seen map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, tr := range e.Variables() {
		switch tr.RootName() {
		case "var":
			if len(tr) > 1 {
				out["var."+tr[1].(hcl.TraverseAttr).Name] = true
			}
		case "local":
			if len(tr) < 2 {
				continue
			}
			name := tr[1].(hcl.TraverseAttr).Name
			if seen[name] {
				continue
			}
			seen[name] = true
			if le, ok := m.locals[name]; ok {
				for v := range m.varRoots(le, nil, seen) {
					out[v] = true
				}
			}
		case "each":
			// each.* comes from the values for_each can produce: of a conditional
			// (var.x ? toset(var.internal_cidrs) : toset([])) only its results, as the
			// condition only switches the resource on or off and supplies no value.
			for _, fe := range conditionalResults(forEach) {
				for v := range m.varRoots(fe, nil, seen) {
					out[v] = true
				}
			}
		}
	}
	return out
}

// conditionalResults returns the expressions a value can come from: the results of a
// conditional (recursively), else the expression itself; none for nil.
func conditionalResults(e hclsyntax.Expression) []hclsyntax.Expression {
	switch c := e.(type) {
	case nil:
		return nil
	case *hclsyntax.ConditionalExpr:
		return append(conditionalResults(c.TrueResult), conditionalResults(c.FalseResult)...)
	case *hclsyntax.ParenthesesExpr:
		return conditionalResults(c.Expression)
	}
	return []hclsyntax.Expression{e}
}

// --- ELB -----------------------------------------------------------------------------------

func TestELBHealthCheckAndDraining(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	elbs := m.blocksOf("resource", "aws_elb")
	if len(elbs) != 1 {
		t.Fatalf("want one aws_elb, found %d", len(elbs))
	}
	elb := elbs[0]
	wantBool(t, elb, "internal", true)

	l := one(t, elb, "listener")
	wantNumber(t, l, "lb_port", 8080)
	wantNumber(t, l, "instance_port", 8080)
	wantString(t, l, "lb_protocol", "http")
	wantString(t, l, "instance_protocol", "http")

	hc := one(t, elb, "health_check")
	wantString(t, hc, "target", "HTTP:8080/heartbeat")
	wantNumber(t, hc, "interval", 30)
	wantNumber(t, hc, "timeout", 3)
	wantNumber(t, hc, "healthy_threshold", 3)
	wantNumber(t, hc, "unhealthy_threshold", 2)

	// The operations document's value. It bounds only the ELB's connections to a deregistered
	// instance, not the worker's drain (see TestSystemdUnits and TestDrainLifecycleHook).
	wantBool(t, elb, "connection_draining", true)
	wantNumber(t, elb, "connection_draining_timeout", 600)

	asg := m.block(t, "resource", "aws_autoscaling_group", "this")
	wantString(t, asg, "health_check_type", "ELB")
	if got := refs(attr(t, asg, "load_balancers").Expr); !slices.Contains(got, "aws_elb.this.name") {
		t.Errorf("aws_autoscaling_group.this load_balancers = %v, want aws_elb.this.name", got)
	}
}

// --- Security groups -----------------------------------------------------------------------

var openCIDR = regexp.MustCompile(`0\.0\.0\.0/0|::/0`)

func TestNoOpenIngress(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	checked := 0

	// Inline rules and the older rule resource.
	for _, sg := range m.blocksOf("resource", "aws_security_group") {
		for _, in := range nested(sg, "ingress") {
			for _, name := range []string{"cidr_blocks", "ipv6_cidr_blocks"} {
				if a, ok := in.Body.Attributes[name]; ok && openCIDR.MatchString(m.text(a.Expr)) {
					t.Errorf("%v: inline ingress %s admits the whole internet: %s", sg.Labels, name, m.text(a.Expr))
				}
			}
			checked++
		}
		if a, ok := sg.Body.Attributes["ingress"]; ok && openCIDR.MatchString(m.text(a.Expr)) {
			t.Errorf("%v: ingress attribute admits the whole internet", sg.Labels)
		}
	}
	for _, r := range m.blocksOf("resource", "aws_security_group_rule") {
		if typ, ok := r.Body.Attributes["type"]; ok && strings.Contains(m.text(typ.Expr), "ingress") {
			for _, name := range []string{"cidr_blocks", "ipv6_cidr_blocks"} {
				if a, ok := r.Body.Attributes[name]; ok && openCIDR.MatchString(m.text(a.Expr)) {
					t.Errorf("%v: ingress rule admits the whole internet", r.Labels)
				}
			}
			checked++
		}
	}

	// The rule resources this module uses: each admits another security group or a CIDR
	// that can only come from var.internal_cidrs.
	for _, r := range m.blocksOf("resource", "aws_vpc_security_group_ingress_rule") {
		checked++
		if _, ok := r.Body.Attributes["cidr_ipv6"]; ok {
			t.Errorf("%v: IPv6 ingress; the internal network is IPv4 only", r.Labels)
		}
		if _, ok := r.Body.Attributes["referenced_security_group_id"]; ok {
			continue
		}
		c, ok := r.Body.Attributes["cidr_ipv4"]
		if !ok {
			t.Errorf("%v: ingress rule with neither cidr_ipv4 nor referenced_security_group_id", r.Labels)
			continue
		}
		if openCIDR.MatchString(m.text(c.Expr)) {
			t.Errorf("%v: cidr_ipv4 = %s admits the whole internet", r.Labels, m.text(c.Expr))
		}
		var forEach hclsyntax.Expression
		if fe, ok := r.Body.Attributes["for_each"]; ok {
			forEach = fe.Expr
		}
		roots := m.varRoots(c.Expr, forEach, map[string]bool{})
		if len(roots) == 0 {
			// A literal: it must be private, and it is not open (checked above).
			v, diags := c.Expr.Value(nil)
			if diags.HasErrors() || v.Type() != cty.String {
				t.Errorf("%v: cidr_ipv4 = %s comes from no variable and is not a literal", r.Labels, m.text(c.Expr))
			}
			continue
		}
		for v := range roots {
			if v != "var.internal_cidrs" {
				t.Errorf("%v: cidr_ipv4 depends on %s; ingress CIDRs may only come from var.internal_cidrs", r.Labels, v)
			}
		}
	}
	if checked == 0 {
		t.Fatal("found no ingress rule at all: the test looks in the wrong place")
	}

	// var.internal_cidrs itself refuses the open ranges.
	v := m.block(t, "variable", "internal_cidrs")
	refused := false
	for _, val := range nested(v, "validation") {
		cond := m.text(attr(t, val, "condition").Expr)
		if strings.Contains(cond, `"0.0.0.0/0"`) && strings.Contains(cond, `"::/0"`) {
			refused = true
		}
	}
	if !refused {
		t.Error(`variable internal_cidrs has no validation refusing "0.0.0.0/0" and "::/0"`)
	}

	// And the example environments do not set them.
	for _, env := range []string{"dev1", "prod1"} {
		tfvars := loadTFVars(t, env)
		cidrs, ok := tfvars["internal_cidrs"]
		if !ok {
			t.Errorf("env/%s.tfvars sets no internal_cidrs", env)
			continue
		}
		for it := cidrs.ElementIterator(); it.Next(); {
			_, c := it.Element()
			if openCIDR.MatchString(c.AsString()) {
				t.Errorf("env/%s.tfvars: internal_cidrs contains %s", env, c.AsString())
			}
		}
	}
}

// loadTFVars evaluates infra/terraform/env/<env>.tfvars (literals only).
func loadTFVars(t *testing.T, env string) map[string]cty.Value {
	t.Helper()
	file, diags := hclparse.NewParser().ParseHCLFile(filepath.Join(repoRoot, "infra", "terraform", "env", env+".tfvars"))
	if diags.HasErrors() {
		t.Fatalf("parse env/%s.tfvars: %s", env, diags.Error())
	}
	attrs, diags := file.Body.JustAttributes()
	if diags.HasErrors() {
		t.Fatalf("env/%s.tfvars: %s", env, diags.Error())
	}
	out := map[string]cty.Value{}
	for name, a := range attrs {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("env/%s.tfvars: %s is not a literal: %s", env, name, diags.Error())
		}
		out[name] = v
	}
	return out
}

// Every env/*.tfvars parses as literals, sets only declared variables and holds no secret; the
// examples dev1 and prod1 exist and set the instance type and the group's sizes.
func TestEnvironmentExamples(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	want := map[string]string{"dev1": "t2.medium", "prod1": "t2.xlarge"}
	envs := envNames(t)
	for env := range want {
		if !slices.Contains(envs, env) {
			t.Errorf("no env/%s.tfvars (envs: %v)", env, envs)
		}
	}
	for _, env := range envs {
		v := loadTFVars(t, env)
		for name, a := range v {
			// Every setting names a declared variable, and no secret is checked in.
			if len(m.blocksOf("variable", name)) == 0 {
				t.Errorf("env/%s.tfvars sets %s, which is not a declared variable", env, name)
			}
			if name == "mongo_uri" || name == "falcon_cid" {
				t.Errorf("env/%s.tfvars holds the secret %s = %#v; pass it as TF_VAR_%s", env, name, a, name)
			}
		}
		instanceType, ok := want[env]
		if !ok {
			continue
		}
		if got := v["instance_type"]; got.IsNull() || got.AsString() != instanceType {
			t.Errorf("env/%s.tfvars: instance_type = %#v, want %q", env, got, instanceType)
		}
		for _, name := range []string{"asg_min_size", "asg_max_size", "asg_desired_capacity"} {
			if _, ok := v[name]; !ok {
				t.Errorf("env/%s.tfvars does not set %s", env, name)
			}
		}
	}
}

// --- IAM -----------------------------------------------------------------------------------

// statements returns the statement blocks of a policy document, dynamic ones included.
func statements(doc *hclsyntax.Block) []*hclsyntax.Block {
	out := nested(doc, "statement")
	for _, d := range nested(doc, "dynamic") {
		if len(d.Labels) == 1 && d.Labels[0] == "statement" {
			out = append(out, nested(d, "content")...)
		}
	}
	return out
}

func TestInstanceRoleAssumesOnlySFMCAndTMOL(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	doc := m.block(t, "data", "aws_iam_policy_document", "instance")

	var assume []*hclsyntax.Block
	for _, st := range statements(doc) {
		actions := m.text(attr(t, st, "actions").Expr)
		if strings.Contains(actions, `"*"`) || strings.Contains(actions, `:*"`) {
			t.Errorf("a statement grants a wildcard action: %s", actions)
		}
		if strings.Contains(actions, "sts:") {
			assume = append(assume, st)
		}
	}
	if len(assume) != 1 {
		t.Fatalf("want exactly one statement with sts: actions in the instance policy, found %d", len(assume))
	}
	st := assume[0]
	if got := stringList(t, st, "actions"); !slices.Equal(got, []string{"sts:AssumeRole"}) {
		t.Errorf("AssumeRole statement actions = %v, want [sts:AssumeRole]", got)
	}
	tuple, ok := attr(t, st, "resources").Expr.(*hclsyntax.TupleConsExpr)
	if !ok {
		t.Fatalf("AssumeRole resources = %s, want a list of the two role variables", m.text(attr(t, st, "resources").Expr))
	}
	var got []string
	for _, e := range tuple.Exprs {
		ste, ok := e.(*hclsyntax.ScopeTraversalExpr)
		if !ok {
			t.Fatalf("AssumeRole resource %s is not a plain variable reference", m.text(e))
		}
		got = append(got, refName(ste.Traversal))
	}
	sort.Strings(got)
	if want := []string{"var.sfmc_role_arn", "var.tmol_role_arn"}; !slices.Equal(got, want) {
		t.Errorf("AssumeRole resources = %v, want exactly %v", got, want)
	}

	// That document is the role's only policy.
	rp := m.block(t, "resource", "aws_iam_role_policy", "instance")
	if got := refs(attr(t, rp, "policy").Expr); !slices.Equal(got, []string{"data.aws_iam_policy_document.instance.json"}) {
		t.Errorf("aws_iam_role_policy.instance policy = %v, want data.aws_iam_policy_document.instance.json", got)
	}
	for _, typ := range []string{"aws_iam_role_policy", "aws_iam_role_policy_attachment"} {
		for _, b := range m.blocksOf("resource", typ) {
			if slices.Equal(b.Labels, []string{"aws_iam_role_policy", "instance"}) {
				continue
			}
			if r, ok := b.Body.Attributes["role"]; ok && strings.Contains(m.text(r.Expr), "aws_iam_role.instance") {
				t.Errorf("%v attaches another policy to the instance role", b.Labels)
			}
		}
	}
}

func TestInstanceRoleQueueAndBucketScope(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	doc := m.block(t, "data", "aws_iam_policy_document", "instance")
	bySid := map[string]*hclsyntax.Block{}
	for _, st := range statements(doc) {
		if s, ok := st.Body.Attributes["sid"]; ok {
			v, _ := s.Expr.Value(nil)
			bySid[v.AsString()] = st
		}
	}
	for sid, want := range map[string]struct {
		actions   []string
		resources []string
	}{
		"ConsumeJobsQueue": {
			[]string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"},
			[]string{"aws_sqs_queue.control.arn", "aws_sqs_queue.jobs.arn"},
		},
		"SendToDeadLetterQueue": {[]string{"sqs:SendMessage", "sqs:GetQueueAttributes"}, []string{"aws_sqs_queue.dlq.arn"}},
		"SendResults":           {[]string{"sqs:SendMessage"}, []string{"aws_sqs_queue.results.arn"}},
		"WriteInternalExports": {
			[]string{"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
			[]string{"aws_s3_bucket.exports.arn", "var.internal_prefix"},
		},
		"ListInternalMultipartUploads": {[]string{"s3:ListBucketMultipartUploads"}, []string{"aws_s3_bucket.exports.arn"}},
	} {
		st, ok := bySid[sid]
		if !ok {
			t.Errorf("instance policy has no statement %s", sid)
			continue
		}
		if got := stringList(t, st, "actions"); !slices.Equal(got, want.actions) {
			t.Errorf("%s actions = %v, want %v", sid, got, want.actions)
		}
		if got := refs(attr(t, st, "resources").Expr); !slices.Equal(got, want.resources) {
			t.Errorf("%s resources refer to %v, want %v", sid, got, want.resources)
		}
	}
	// Writes stay under the prefix.
	if res := m.text(attr(t, bySid["WriteInternalExports"], "resources").Expr); !strings.Contains(res, "/${var.internal_prefix}*") {
		t.Errorf("WriteInternalExports resources = %s, want the bucket ARN / internal prefix *", res)
	}
}

// --- Bucket, queues ------------------------------------------------------------------------

// defaultMaxExportDuration is the worker's MAX_EXPORT_DURATION default.
const defaultMaxExportDuration = worker.DefaultMaxExportDuration

func TestBucketLifecycleAbortsMultipartUploads(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	lc := m.block(t, "resource", "aws_s3_bucket_lifecycle_configuration", "exports")
	found := false
	for _, rule := range nested(lc, "rule") {
		aborts := nested(rule, "abort_incomplete_multipart_upload")
		if len(aborts) == 0 {
			continue
		}
		found = true
		wantString(t, rule, "status", "Enabled")
		// Days from a variable whose default leaves a day over MAX_EXPORT_DURATION's default,
		// and the worker's MAX_EXPORT_DURATION follows it (a day less), so a running export's
		// upload is never aborted under it.
		if got := m.text(attr(t, aborts[0], "days_after_initiation").Expr); got != "var.abort_incomplete_upload_days" {
			t.Errorf("days_after_initiation = %s, want var.abort_incomplete_upload_days", got)
		}
		days := literal(t, m.block(t, "variable", "abort_incomplete_upload_days"), "default")
		if d, _ := days.AsBigFloat().Int64(); time.Duration(d-1)*24*time.Hour != defaultMaxExportDuration {
			t.Errorf("abort_incomplete_upload_days defaults to %d; MAX_EXPORT_DURATION defaults to %s, which must be a day less", d, defaultMaxExportDuration)
		}
		env := readFile(t, "infra", "terraform", "templates", "vf-export.env.tftpl")
		ud := readFile(t, "infra", "terraform", "userdata.tf")
		if !strings.Contains(env, "MAX_EXPORT_DURATION=${max_export_hours}h") || !strings.Contains(ud, "max_export_hours   = (var.abort_incomplete_upload_days - 1) * 24") {
			t.Error("the container's MAX_EXPORT_DURATION does not follow abort_incomplete_upload_days (one day less)")
		}
		if !strings.Contains(env, "MAX_ATTEMPTS=${max_attempts}") || !strings.Contains(ud, "max_attempts       = var.max_attempts") {
			t.Error("the container's MAX_ATTEMPTS does not follow var.max_attempts")
		}
		// The ledger's bound must come first: the redrive policy is the backstop above it.
		attempts, _ := literal(t, m.block(t, "variable", "max_attempts"), "default").AsBigFloat().Int64()
		receives, _ := literal(t, m.block(t, "variable", "max_receive_count"), "default").AsBigFloat().Int64()
		if receives <= attempts {
			t.Errorf("max_receive_count (%d) must be above max_attempts (%d)", receives, attempts)
		}
		// An empty filter: the rule covers every key, not just the internal prefix.
		f := one(t, rule, "filter")
		if len(f.Body.Attributes) != 0 || len(f.Body.Blocks) != 0 {
			t.Error("the abort rule's filter narrows it; it must cover the whole bucket (filter {})")
		}
	}
	if !found {
		t.Error("no lifecycle rule with abort_incomplete_multipart_upload")
	}

	v := m.block(t, "resource", "aws_s3_bucket_versioning", "exports")
	wantString(t, one(t, v, "versioning_configuration"), "status", "Enabled")
	pab := m.block(t, "resource", "aws_s3_bucket_public_access_block", "exports")
	for _, name := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
		wantBool(t, pab, name, true)
	}
	sse := m.block(t, "resource", "aws_s3_bucket_server_side_encryption_configuration", "exports")
	def := one(t, one(t, sse, "rule"), "apply_server_side_encryption_by_default")
	if a := literal(t, def, "sse_algorithm"); a.AsString() == "" {
		t.Error("bucket encryption has no algorithm")
	}
}

func TestQueues(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	for _, name := range []string{"jobs", "dlq", "results"} {
		wantBool(t, m.block(t, "resource", "aws_sqs_queue", name), "sqs_managed_sse_enabled", true)
	}
	jobs := m.block(t, "resource", "aws_sqs_queue", "jobs")
	if got := refs(attr(t, jobs, "redrive_policy").Expr); !slices.Equal(got, []string{"aws_sqs_queue.dlq.arn", "var.max_receive_count"}) {
		t.Errorf("jobs redrive_policy refers to %v, want the DLQ's ARN and var.max_receive_count", got)
	}
	wantNumber(t, m.block(t, "variable", "max_receive_count"), "default", 10)
	wantNumber(t, m.block(t, "variable", "jobs_visibility_timeout_seconds"), "default", 900)
}

// --- Alarms and scaling --------------------------------------------------------------------

func TestCPUAlarmsAndScaling(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	for _, c := range []struct {
		alarm, policy string
		threshold     int64
		period, evals int64
		comparison    string
		adjustment    int64
	}{
		{"cpu_high", "cpu_high", 30, 60, 3, "GreaterThanThreshold", 4},
		{"cpu_low", "cpu_low", 15, 300, 3, "LessThanThreshold", -1},
	} {
		a := m.block(t, "resource", "aws_cloudwatch_metric_alarm", c.alarm)
		wantString(t, a, "namespace", "AWS/EC2")
		wantString(t, a, "metric_name", "CPUUtilization")
		wantString(t, a, "statistic", "Average")
		wantNumber(t, a, "threshold", c.threshold)
		wantNumber(t, a, "period", c.period)
		wantNumber(t, a, "evaluation_periods", c.evals)
		wantString(t, a, "comparison_operator", c.comparison)
		if got := refs(attr(t, a, "dimensions").Expr); !slices.Equal(got, []string{"local.asg_dimensions"}) {
			t.Errorf("%s dimensions = %v, want the group's", c.alarm, got)
		}
		actions := refs(attr(t, a, "alarm_actions").Expr)
		if !slices.Contains(actions, "aws_autoscaling_policy."+c.policy) || !slices.Contains(actions, "aws_sns_topic.alarms.arn") {
			t.Errorf("%s alarm_actions = %v, want the %s policy and the SNS topic", c.alarm, actions, c.policy)
		}

		p := m.block(t, "resource", "aws_autoscaling_policy", c.policy)
		wantString(t, p, "adjustment_type", "ChangeInCapacity")
		wantString(t, p, "policy_type", "SimpleScaling")
		wantNumber(t, p, "scaling_adjustment", c.adjustment)
	}
}

func TestEveryAlarmNotifiesSNS(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	alarms := m.blocksOf("resource", "aws_cloudwatch_metric_alarm")
	names := map[string]bool{}
	for _, a := range alarms {
		names[a.Labels[1]] = true
		if got := refs(attr(t, a, "alarm_actions").Expr); !slices.Contains(got, "aws_sns_topic.alarms.arn") {
			t.Errorf("alarm %s does not notify aws_sns_topic.alarms: %v", a.Labels[1], got)
		}
	}
	for _, want := range []string{"cpu_high", "cpu_low", "unhealthy_hosts", "elb_5xx", "in_service_below_min", "memory_high", "disk_high", "dlq_not_empty", "oldest_job_age"} {
		if !names[want] {
			t.Errorf("no aws_cloudwatch_metric_alarm %q", want)
		}
	}
	dlq := m.block(t, "resource", "aws_cloudwatch_metric_alarm", "dlq_not_empty")
	wantString(t, dlq, "metric_name", "ApproximateNumberOfMessagesVisible")
	wantNumber(t, dlq, "threshold", 0)
	wantString(t, dlq, "comparison_operator", "GreaterThanThreshold")
	wantString(t, m.block(t, "resource", "aws_cloudwatch_metric_alarm", "oldest_job_age"), "metric_name", "ApproximateAgeOfOldestMessage")
	for _, name := range []string{"memory_high", "disk_high"} {
		a := m.block(t, "resource", "aws_cloudwatch_metric_alarm", name)
		wantString(t, a, "namespace", "CWAgent")
		wantNumber(t, a, "threshold", 80)
	}
}

func TestBacklogPerInstancePolicy(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	p := m.block(t, "resource", "aws_autoscaling_policy", "backlog")
	wantString(t, p, "policy_type", "TargetTrackingScaling")
	spec := one(t, one(t, p, "target_tracking_configuration"), "customized_metric_specification")
	metricByID := map[string]*hclsyntax.Block{}
	for _, q := range nested(spec, "metrics") {
		metricByID[literal(t, q, "id").AsString()] = q
	}
	e, ok := metricByID["backlog_per_instance"]
	if !ok {
		t.Fatal("no backlog_per_instance expression in the target-tracking policy")
	}
	wantString(t, e, "expression", "visible / in_service")
	wantBool(t, e, "return_data", true)
	for id, metric := range map[string]string{"visible": "ApproximateNumberOfMessagesVisible", "in_service": "GroupInServiceInstances"} {
		q, ok := metricByID[id]
		if !ok {
			t.Errorf("no metric %q in the target-tracking policy", id)
			continue
		}
		wantString(t, one(t, one(t, q, "metric_stat"), "metric"), "metric_name", metric)
	}
}

// --- ASG -----------------------------------------------------------------------------------

func TestASGTagsAndGroupMetrics(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	asg := m.block(t, "resource", "aws_autoscaling_group", "this")
	tags := map[string]string{}
	for _, tag := range nested(asg, "tag") {
		key := literal(t, tag, "key").AsString()
		wantBool(t, tag, "propagate_at_launch", true)
		v := attr(t, tag, "value").Expr
		if val, diags := v.Value(nil); !diags.HasErrors() {
			tags[key] = val.AsString()
		} else {
			tags[key] = m.text(v)
		}
	}
	for key, want := range map[string]string{
		"Prometheus":     "enabled",
		"Prometheus8080": "enabled",
		"InventoryCode":  "vf-export",
		"ProductCode":    "var.product_code",
		"Environment":    "var.environment_tag",
	} {
		if got, ok := tags[key]; !ok || got != want {
			t.Errorf("ASG tag %s = %q (present %v), want %q", key, got, ok, want)
		}
	}

	metrics := stringList(t, asg, "enabled_metrics")
	for _, want := range []string{
		"GroupMinSize", "GroupMaxSize", "GroupDesiredCapacity", "GroupInServiceInstances",
		"GroupPendingInstances", "GroupStandbyInstances", "GroupTerminatingInstances", "GroupTotalInstances",
	} {
		if !slices.Contains(metrics, want) {
			t.Errorf("ASG enabled_metrics lacks %s", want)
		}
	}
	for _, name := range []string{"min_size", "max_size", "desired_capacity"} {
		if got := refs(attr(t, asg, name).Expr); len(got) != 1 || !strings.HasPrefix(got[0], "var.") {
			t.Errorf("ASG %s = %v, want a variable", name, got)
		}
	}
}

// --- Units ---------------------------------------------------------------------------------

func readFile(t *testing.T, parts ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{repoRoot}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	app := readFile(t, "infra", "terraform", "templates", "vf-export.service.tftpl")
	for _, want := range []string{
		"Restart=always",
		"--name vf-export",
		"--log-driver fluentd",
		"--log-opt fluentd-address=localhost:24224",
		"--log-opt tag=",
		"--env-file /etc/vf-export/vf-export.env",
		"-p 8080:8080",
		"--stop-timeout ${docker_stop_timeout}",
		"docker stop -t ${docker_stop_timeout} vf-export",
		"TimeoutStopSec=${systemd_stop_timeout}",
		" worker",
	} {
		if !strings.Contains(app, want) {
			t.Errorf("vf-export.service.tftpl lacks %q", want)
		}
	}
	if strings.Contains(app, "--restart") {
		t.Error("vf-export.service.tftpl sets a docker restart policy; systemd's Restart=always supervises the container")
	}

	// The stop timeouts outlast the drain and the stop grace after it: docker's by 30 s,
	// systemd's by 60 s.
	m := loadModule(t)
	for name, margin := range map[string]string{"docker_stop_timeout": "+ 30", "systemd_stop_timeout": "+ 60"} {
		e, ok := m.locals[name]
		if !ok {
			t.Errorf("no local %s", name)
			continue
		}
		if want := "var.drain_timeout_seconds + var.drain_stop_grace_seconds " + margin; m.text(e) != want {
			t.Errorf("local.%s = %s, want %s", name, m.text(e), want)
		}
	}

	for file, want := range map[string]string{
		"node-exporter.service.tftpl":     "--web.listen-address=:9100",
		"cadvisor.service.tftpl":          "--port=4914",
		"fluentd.service.tftpl":           "127.0.0.1:24224:24224",
		"vf-export-indexes.service.tftpl": " indexes",
		"falcon-sensor.service.tftpl":     "--name falcon",
	} {
		if !strings.Contains(readFile(t, "infra", "terraform", "templates", file), want) {
			t.Errorf("%s lacks %q", file, want)
		}
	}
	// The falcon sensor is optional.
	if ud := readFile(t, "infra", "terraform", "userdata.tf"); !strings.Contains(ud, "var.falcon_enabled ?") {
		t.Error("userdata.tf does not make the falcon sensor unit conditional on var.falcon_enabled")
	}
}

// --- Drain ---------------------------------------------------------------------------------

// varRange reads the bounds of a variable validated as var.NAME >= LO && var.NAME <= HI.
func (m *module) varRange(t *testing.T, name string) (lo, hi int64) {
	t.Helper()
	v := m.block(t, "variable", name)
	cond := m.text(attr(t, one(t, v, "validation"), "condition").Expr)
	re := regexp.MustCompile(`^var\.` + name + ` >= (\d+) && var\.` + name + ` <= (\d+)$`)
	sm := re.FindStringSubmatch(cond)
	if sm == nil {
		t.Fatalf("variable %s: validation %q is not var.%s >= LO && var.%s <= HI", name, cond, name, name)
	}
	lo, _ = strconv.ParseInt(sm[1], 10, 64)
	hi, _ = strconv.ParseInt(sm[2], 10, 64)
	return lo, hi
}

// The drain: DRAIN_TIMEOUT (120 s by default: short jobs finish, long ones stop at their next
// stored part and are continued elsewhere), then DRAIN_STOP_GRACE (60 s) for jobs to reach that
// part. Both reach the container, and the termination lifecycle hook waits for both.
func TestDrainLifecycleHook(t *testing.T) {
	t.Parallel()
	m := loadModule(t)
	wantNumber(t, m.block(t, "variable", "drain_timeout_seconds"), "default", 120)
	wantNumber(t, m.block(t, "variable", "drain_stop_grace_seconds"), "default", 60)
	// Terraform's default grace is the worker's own.
	var wc worker.Config
	wc.SetDefaults()
	if wc.StopGrace != 60*time.Second {
		t.Errorf("worker.Config's default StopGrace is %s; drain_stop_grace_seconds defaults to 60", wc.StopGrace)
	}

	env := readFile(t, "infra", "terraform", "templates", "vf-export.env.tftpl")
	ud := readFile(t, "infra", "terraform", "userdata.tf")
	for _, want := range []string{"DRAIN_TIMEOUT=${drain_timeout}s\n", "DRAIN_STOP_GRACE=${drain_stop_grace}s\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("vf-export.env.tftpl lacks %q", strings.TrimSpace(want))
		}
	}
	for _, re := range []string{`drain_timeout\s+= var\.drain_timeout_seconds\n`, `drain_stop_grace\s+= var\.drain_stop_grace_seconds\n`} {
		// Once for the env file, once for the units' comments.
		if n := len(regexp.MustCompile(re).FindAllString(ud, -1)); n != 2 {
			t.Errorf("userdata.tf: %d templatefile arguments matching %s, want 2 (env file and units)", n, re)
		}
	}

	hook := m.block(t, "resource", "aws_autoscaling_lifecycle_hook", "drain")
	wantString(t, hook, "lifecycle_transition", "autoscaling:EC2_INSTANCE_TERMINATING")
	wantString(t, hook, "default_result", "CONTINUE")
	if got, want := m.text(attr(t, hook, "heartbeat_timeout").Expr), "var.drain_timeout_seconds + var.drain_stop_grace_seconds + 60"; got != want {
		t.Errorf("drain lifecycle hook heartbeat_timeout = %s, want %s", got, want)
	}
	// The longest drain the variables admit still fits the hook's 7200 s maximum, and the
	// grace leaves time to store a part.
	_, drainHi := m.varRange(t, "drain_timeout_seconds")
	graceLo, graceHi := m.varRange(t, "drain_stop_grace_seconds")
	if drainHi+graceHi+60 > 7200 {
		t.Errorf("drain_timeout_seconds (<= %d) + drain_stop_grace_seconds (<= %d) + 60 exceeds the lifecycle hook's 7200 s", drainHi, graceHi)
	}
	if graceLo < 10 {
		t.Errorf("drain_stop_grace_seconds admits %d s; want at least 10", graceLo)
	}
}

// --- fluentd -------------------------------------------------------------------------------

// section is one <directive arg> ... </directive> of a fluentd config.
type section struct {
	name, arg string
	params    map[string]string
	children  []*section
}

func parseFluentd(t *testing.T, src string) *section {
	t.Helper()
	root := &section{name: "root", params: map[string]string{}}
	stack := []*section{root}
	open := regexp.MustCompile(`^<([a-z_]+)\s*([^>]*)>$`)
	closing := regexp.MustCompile(`^</([a-z_]+)>$`)
	sc := bufio.NewScanner(strings.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cur := stack[len(stack)-1]
		if mm := closing.FindStringSubmatch(line); mm != nil {
			if cur.name != mm[1] {
				t.Fatalf("fluent.conf:%d: </%s> closes <%s>", n, mm[1], cur.name)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		if mm := open.FindStringSubmatch(line); mm != nil {
			s := &section{name: mm[1], arg: strings.TrimSpace(mm[2]), params: map[string]string{}}
			cur.children = append(cur.children, s)
			stack = append(stack, s)
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		cur.params[key] = strings.TrimSpace(val)
	}
	if len(stack) != 1 {
		t.Fatalf("fluent.conf: <%s> is never closed", stack[len(stack)-1].name)
	}
	return root
}

// find returns every section, at any depth, with that name whose @type is typ (any if "").
func (s *section) find(name, typ string) []*section {
	var out []*section
	for _, c := range s.children {
		if c.name == name && (typ == "" || c.params["@type"] == typ) {
			out = append(out, c)
		}
		out = append(out, c.find(name, typ)...)
	}
	return out
}

func TestFluentdConfig(t *testing.T) {
	t.Parallel()
	conf := parseFluentd(t, readFile(t, "infra", "fluentd", "fluent.conf"))

	src := conf.find("source", "forward")
	if len(src) != 1 {
		t.Errorf("want one forward source, found %d", len(src))
	} else if port := src[0].params["port"]; port != "24224" {
		t.Errorf("forward source listens on port %q, want 24224", port)
	}

	parsers := conf.find("filter", "parser")
	if len(parsers) != 1 {
		t.Fatalf("want one parser filter, found %d", len(parsers))
	}
	p := parsers[0]
	if p.params["key_name"] != "log" || p.params["reserve_data"] != "true" {
		t.Errorf("parser filter: key_name %q reserve_data %q, want log and true", p.params["key_name"], p.params["reserve_data"])
	}
	if ps := p.find("parse", "json"); len(ps) != 1 {
		t.Error("parser filter does not parse JSON")
	}
	if len(conf.find("filter", "concat")) == 0 {
		t.Error("no concat filter (fluent-plugin-concat)")
	}

	rt := conf.find("filter", "record_transformer")
	if len(rt) != 1 {
		t.Fatalf("want one record_transformer, found %d", len(rt))
	}
	rec := rt[0].find("record", "")
	if len(rec) != 1 {
		t.Fatal("record_transformer has no <record>")
	}
	for _, field := range []string{"aws_region", "product_name", "environment_tag", "instance_id", "ip_address"} {
		if v := rec[0].params[field]; !strings.Contains(v, "ENV[") {
			t.Errorf("record_transformer does not add %s from the environment (got %q)", field, v)
		}
	}

	out := conf.find("match", "aws-elasticsearch-service")
	if len(out) != 1 {
		t.Fatalf("want one aws-elasticsearch-service output, found %d", len(out))
	}
	es := out[0]
	if es.params["logstash_format"] != "true" || es.params["logstash_prefix"] != "logstash-application_log" {
		t.Errorf("output: logstash_format %q logstash_prefix %q", es.params["logstash_format"], es.params["logstash_prefix"])
	}
	buf := es.find("buffer", "")
	if len(buf) != 1 {
		t.Fatalf("output has %d <buffer> sections, want 1", len(buf))
	}
	for key, want := range map[string]string{"flush_interval": "5s", "chunk_limit_size": "16MB", "queue_limit_length": "64"} {
		if got := buf[0].params[key]; got != want {
			t.Errorf("buffer %s = %q, want %q", key, got, want)
		}
	}
}

// --- Metric and log names ------------------------------------------------------------------

// contractMetrics are the metrics the service promises (issue 6), with their types.
var contractMetrics = map[string]string{
	"export_jobs_total":                                   "counter",
	"export_job_duration_seconds":                         "histogram",
	"export_rows_total":                                   "counter",
	"export_bytes_uncompressed_total":                     "counter",
	"export_bytes_written_total":                          "counter",
	"export_jobs_in_flight":                               "gauge",
	"export_sqs_requests_total":                           "counter",
	"export_assume_role_total":                            "counter",
	"export_dlq_messages_total":                           "counter",
	"export_queue_messages":                               "gauge",
	"export_message_age_seconds":                          "histogram",
	"export_last_success_timestamp_seconds":               "gauge",
	"export_receive_loop_last_progress_timestamp_seconds": "gauge",
	"export_build_info":                                   "gauge",
	"export_http_requests_total":                          "counter",
	"export_http_request_duration_seconds":                "histogram",
}

// standardMetrics are the Go and process collectors' names the files may use.
var standardMetrics = map[string]bool{
	"up": true, "go_goroutines": true, "go_memstats_heap_inuse_bytes": true,
	"go_memstats_heap_alloc_bytes": true, "go_gc_duration_seconds": true,
	"process_resident_memory_bytes": true, "process_cpu_seconds_total": true,
	"process_open_fds": true, "process_start_time_seconds": true,
}

// serviceLogFields are the JSON fields the service writes; fluentdFields are added on the way.
var (
	serviceLogFields = []string{"time", "level", "message", "export_id", "kind", "destination", "duration", "rows", "bytes"}
	fluentdFields    = []string{"aws_region", "product_name", "environment_tag", "instance_id", "ip_address", "@timestamp", "@log_name"}
)

var metricToken = regexp.MustCompile(`\b((?:export|go|process)_[a-z0-9_]+)\b`)

// serviceStrings collects the string literals of the service's Go code (not tests, not this
// package, not the tools), where metric names and log field names are defined.
func serviceStrings(t *testing.T) map[string]bool {
	t.Helper()
	lit := regexp.MustCompile(`"([a-z_][a-z0-9_]*)"`)
	out := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", ".stack", "node_modules", "tools", "infra", "docs", "infracheck", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetricNamesExist checks that every metric the alerts, their tests, the dashboard and the
// runbooks name is one the service really exports: registered by worker.NewMetrics on the
// service's registry (a histogram's _bucket, _sum and _count series included).
func TestMetricNamesExist(t *testing.T) {
	t.Parallel()
	registered := registeredMetrics(t)
	files := []string{
		filepath.Join("infra", "prometheus", "alerts.yml"),
		filepath.Join("infra", "prometheus", "alerts_test.yml"),
		filepath.Join("infra", "grafana", "export-service.json"),
		filepath.Join("docs", "OPERATIONS.md"),
	}
	for _, f := range files {
		src := readFile(t, f)
		seen := 0
		for _, tok := range metricToken.FindAllString(src, -1) {
			if slices.Contains(serviceLogFields, tok) || slices.Contains(fluentdFields, tok) {
				continue // a log field such as export_id, not a metric
			}
			if _, ok := seriesMetric(registered, tok); !ok {
				t.Errorf("%s names %s, which the service does not export (worker.NewMetrics does not register it)", f, tok)
				continue
			}
			seen++
		}
		if seen == 0 {
			t.Errorf("%s names no metric at all: the test reads the wrong file", f)
		}
	}
}

// TestKibanaFieldsExist checks the field names of the Kibana queries in OPERATIONS.md
// (```kibana blocks): each is a field the service logs or fluentd adds.
func TestKibanaFieldsExist(t *testing.T) {
	t.Parallel()
	doc := readFile(t, "docs", "OPERATIONS.md")
	code := serviceStrings(t)
	block := regexp.MustCompile("(?s)```kibana\n(.*?)```")
	field := regexp.MustCompile(`(@?[a-z_]+):`)
	queries := block.FindAllStringSubmatch(doc, -1)
	if len(queries) == 0 {
		t.Fatal("docs/OPERATIONS.md has no ```kibana blocks")
	}
	for _, q := range queries {
		for _, f := range field.FindAllStringSubmatch(q[1], -1) {
			name := f[1]
			switch {
			case slices.Contains(serviceLogFields, name):
				if name != "time" && name != "level" && name != "message" && !code[name] {
					t.Errorf("Kibana query uses %s, which no Go file of the service logs", name)
				}
			case slices.Contains(fluentdFields, name):
			default:
				t.Errorf("Kibana query uses %s, which is neither a log field of the service nor one fluentd adds", name)
			}
		}
	}
}

// TestAlertsDocumented checks that every alert has a runbook section in OPERATIONS.md.
func TestAlertsDocumented(t *testing.T) {
	t.Parallel()
	rules := readFile(t, "infra", "prometheus", "alerts.yml")
	doc := readFile(t, "docs", "OPERATIONS.md")
	names := regexp.MustCompile(`(?m)^\s*- alert: (\w+)`).FindAllStringSubmatch(rules, -1)
	if len(names) == 0 {
		t.Fatal("alerts.yml has no alerts")
	}
	for _, n := range names {
		if !strings.Contains(doc, "### "+n[1]) {
			t.Errorf("alert %s has no \"### %s\" section in docs/OPERATIONS.md", n[1], n[1])
		}
		if !strings.Contains(rules, "docs/OPERATIONS.md#"+strings.ToLower(n[1])) {
			t.Errorf("alert %s has no runbook_url to its section", n[1])
		}
	}
}

// TestDashboard checks that the Grafana dashboard is valid JSON and shows what on-call needs:
// queue depth, jobs by outcome, duration percentiles, rows/s, jobs in flight and the DLQ.
func TestDashboard(t *testing.T) {
	t.Parallel()
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "infra", "grafana", "export-service.json")), &dash); err != nil {
		t.Fatalf("infra/grafana/export-service.json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for what, re := range map[string]string{
		"jobs queue depth":    `export_queue_messages\{queue="jobs"`,
		"DLQ depth":           `export_queue_messages\{queue="dlq"`,
		"jobs by outcome":     `sum by \(outcome\) \(rate\(export_jobs_total`,
		"duration p50":        `histogram_quantile\(0\.5, .*export_job_duration_seconds_bucket`,
		"duration p95":        `histogram_quantile\(0\.95, .*export_job_duration_seconds_bucket`,
		"duration p99":        `histogram_quantile\(0\.99, .*export_job_duration_seconds_bucket`,
		"rows per second":     `rate\(export_rows_total`,
		"jobs in flight":      `export_jobs_in_flight`,
		"messages to the DLQ": `export_dlq_messages_total`,
	} {
		rx := regexp.MustCompile(re)
		if !slices.ContainsFunc(exprs, rx.MatchString) {
			t.Errorf("the dashboard has no panel for %s (no query matching %s)", what, re)
		}
	}
}
