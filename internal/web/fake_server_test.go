package web_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandemdocs/tandem/protocol"
)

// TestFakeServerSpeaksTheProtocol checks the JavaScript client tests'
// fake server (jstest/fake-server.mjs) against the real one: it runs the
// client tests with the fake recording every frame it sends, and each
// must decode strictly into package protocol's Message, with a type and
// an error code the protocol has, and only fields that the real server
// (its core's transcripts, internal/collab/testdata/core) sends in a
// message of that type.
func TestFakeServerSpeaksTheProtocol(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("TANDEM_REQUIRE_NODE") == "1" {
			t.Fatal("TANDEM_REQUIRE_NODE=1 but node is not installed")
		}
		t.Skip("node is not installed")
	}
	if testing.Short() {
		t.Skip("runs the JavaScript client tests (-short)")
	}
	frames := filepath.Join(t.TempDir(), "frames")
	cmd := exec.Command(node, "--test", "--test-reporter=dot", "jstest/client.test.mjs")
	cmd.Env = append(os.Environ(), "TANDEM_FAKE_FRAMES="+frames)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node --test jstest/client.test.mjs: %v\n%s", err, out)
	}
	real := fieldsByType(t, serverFrames(t))
	fake := fieldsByType(t, readLines(t, frames))
	if len(fake) == 0 {
		t.Fatal("the fake sent nothing")
	}
	for typ, fields := range fake {
		for f := range fields {
			if !real[typ][f] {
				t.Errorf("the fake sends %s messages with %q, which the real server's never have (it has %v)", typ, f, keys(real[typ]))
			}
		}
	}
	t.Logf("the fake's message types and fields: %v", fake)
}

// serverFrames are the frames the core's transcripts show it sending.
func serverFrames(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join("..", "collab", "testdata", "core", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	var out []string
	for _, f := range files {
		for _, line := range readLines(t, f) {
			if _, frame, ok := strings.Cut(line, " <- "); ok && (strings.HasPrefix(frame, "{") || strings.HasPrefix(frame, "[")) {
				out = append(out, frame)
			}
		}
	}
	return out
}

func readLines(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// fieldsByType decodes each frame strictly into protocol.Message and
// returns, per message type, the fields its messages carry (the top
// level's, and those of hello's ops and peers as "ops.f", "peers.f").
func fieldsByType(t *testing.T, frames []string) map[string]map[string]bool {
	t.Helper()
	codes := map[string]bool{}
	for _, c := range []string{protocol.CodeInvalidOp, protocol.CodeRevAhead, protocol.CodeRevTooOld, protocol.CodeTooLarge, protocol.CodeRejected,
		protocol.CodeNotFound, protocol.CodeForbidden, protocol.CodeRateLimited, protocol.CodeTooFarBehind, protocol.CodeBadMessage,
		protocol.CodeInternal, protocol.CodeStorageFull, protocol.CodeSourceDenied, protocol.CodeDocumentFull, protocol.CodeBadSeq} {
		codes[c] = true
	}
	out := map[string]map[string]bool{}
	for _, frame := range frames {
		var raws []json.RawMessage
		if strings.HasPrefix(frame, "[") {
			if err := json.Unmarshal([]byte(frame), &raws); err != nil {
				t.Fatalf("%s: %v", frame, err)
			}
		} else {
			raws = []json.RawMessage{json.RawMessage(frame)}
		}
		for _, raw := range raws {
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			var m protocol.Message
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("%s: not a protocol.Message: %v", raw, err)
			}
			if m.Type == protocol.TypeError && !codes[m.Code] {
				t.Errorf("%s: error code %q is not the protocol's", raw, m.Code)
			}
			var top map[string]json.RawMessage
			json.Unmarshal(raw, &top)
			if out[m.Type] == nil {
				out[m.Type] = map[string]bool{}
			}
			for k, v := range top {
				out[m.Type][k] = true
				if k == "ops" || k == "peers" {
					var subs []map[string]json.RawMessage
					json.Unmarshal(v, &subs)
					for _, s := range subs {
						for sk := range s {
							out[m.Type][k+"."+sk] = true
						}
					}
				}
			}
		}
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
