// Package traces loads the real editing traces (josephg/editing-traces)
// that the engines' tests and benchmarks replay. The traces live outside
// the repository, in the shared traces directory (see its SOURCE.md); they
// are never copied in, and Load skips the test when they are absent.
package traces

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Sequential are the traces whose every patch applies in order from
// StartContent.
var Sequential = []string{"seph-blog1", "friendsforever_flat", "sveltecomponent", "json-crdt-patch"}

// Patch is one edit: at Pos (code points) delete Del code points, then
// insert Ins.
type Patch struct {
	Pos, Del int
	Ins      string
}

// UnmarshalJSON reads the trace's [pos, del, "ins"] form.
func (p *Patch) UnmarshalJSON(b []byte) error {
	var a [3]json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if err := json.Unmarshal(a[0], &p.Pos); err != nil {
		return err
	}
	if err := json.Unmarshal(a[1], &p.Del); err != nil {
		return err
	}
	return json.Unmarshal(a[2], &p.Ins)
}

// Txn is a transaction of one agent, made on its parents.
type Txn struct {
	Agent   int     `json:"agent"`
	Parents []int   `json:"parents"`
	Patches []Patch `json:"patches"`
}

// Trace is a whole trace.
type Trace struct {
	StartContent string `json:"startContent"`
	EndContent   string `json:"endContent"`
	Txns         []Txn  `json:"txns"`
}

// Patches returns every patch of tr, in order.
func (tr *Trace) Patches() []Patch {
	var ps []Patch
	for _, txn := range tr.Txns {
		ps = append(ps, txn.Patches...)
	}
	return ps
}

// Dir returns the traces directory: $TANDEM_TRACES, or shared/traces
// beside the repository (up from the directory of the test's package).
func Dir() string {
	if d := os.Getenv("TANDEM_TRACES"); d != "" {
		return d
	}
	dir, _ := os.Getwd()
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "..", "shared", "traces")
		}
		parent := filepath.Dir(d)
		if parent == d {
			return filepath.Join("..", "..", "shared", "traces")
		}
		d = parent
	}
}

var cache sync.Map // name -> *Trace

// Load reads and decodes a trace, or skips tb when it is not there.
func Load(tb testing.TB, name string) *Trace {
	tb.Helper()
	if tr, ok := cache.Load(name); ok {
		return tr.(*Trace)
	}
	path := filepath.Join(Dir(), name+".json.gz")
	f, err := os.Open(path)
	if err != nil {
		tb.Skipf("trace %s is not available (%v): the traces live in shared/traces beside the repository, or set TANDEM_TRACES to their directory", name, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	tr := new(Trace)
	if err := json.NewDecoder(zr).Decode(tr); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	cache.Store(name, tr)
	return tr
}
