// Package monitoring holds the fleet's alert rules (relais.rules.yml, with
// their promtool unit tests in relais.rules.test.yml, run by make test) and
// Grafana dashboard (relais-fleet.dashboard.json). These tests check that
// every PromQL expression of the dashboard parses (promtool check rules,
// each expression as a recording rule) and that the rules and the dashboard
// name only metrics relaisd exports.
package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboard = "relais-fleet.dashboard.json"

// dashboardExprs returns every "expr" in the dashboard, in order.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var exprs []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if e, ok := x["expr"].(string); ok {
				exprs = append(exprs, e)
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(v)
	slices.Sort(exprs) // map order is random: a stable rule file
	return exprs
}

// requirePromtool skips without promtool, but fails in CI (.ci/run
// installs Debian's prometheus, and sets CI).
func requirePromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("promtool not installed in CI (.ci/run installs Debian's prometheus): %v", err)
	}
	t.Skipf("promtool not installed (Debian: apt-get install --no-install-recommends prometheus; bash .ci/run does): %v", err)
	return ""
}

func TestDashboardQueriesParse(t *testing.T) {
	promtool := requirePromtool(t)
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("%d expressions in the dashboard: the walk is broken", len(exprs))
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(e) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard:expr_%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's expressions: %v\n%s\n%s", err, out, b.String())
	}
}

// exported are the metric names relaisd defines (appliance/metrics.go).
func exported(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "appliance", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`"(relais_[a-z_]+)"`).FindAllSubmatch(src, -1) {
		names = append(names, string(m[1]))
	}
	return names
}

func TestRulesAndDashboardNameExportedMetrics(t *testing.T) {
	names := exported(t)
	if len(names) < 30 {
		t.Fatalf("%d metric names found in appliance/metrics.go: the pattern is broken", len(names))
	}
	rules, err := os.ReadFile("relais.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]string{"relais.rules.yml": string(rules), dashboard: strings.Join(dashboardExprs(t), "\n")}
	used := regexp.MustCompile(`\brelais_[a-z_]+\b`)
	for file, text := range texts {
		for _, n := range used.FindAllString(text, -1) {
			if !slices.Contains(names, n) {
				t.Errorf("%s: %s is not a metric relaisd exports", file, n)
			}
		}
	}
}
