package tandem_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tandemdocs/tandem"
	"github.com/tandemdocs/tandem/client"
)

// Tandem inside an application's own net/http server, under /collab/.
// (The examples listen on httptest servers; a real application uses its
// http.Server.)
func Example() {
	ctx := context.Background()
	srv, err := tandem.New(ctx, tandem.Config{
		Storage: tandem.Memory{}, // tandem.Badger{Dir: "data"} to keep them
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "the application's home page") })
	mux.Handle("/collab/", http.StripPrefix("/collab", srv))
	web := httptest.NewServer(mux)
	defer web.Close()

	// The application creates a document under an id of its own; a Go
	// client (or a browser) edits it through the mount point.
	if err := srv.CreateDocument(ctx, tandem.NewDocument{ID: "minutes-42", Title: "Minutes", Content: "Present: "}); err != nil {
		log.Fatal(err)
	}
	doc, err := client.Dial(ctx, web.URL+"/collab", "minutes-42", client.Options{Name: "Ann"})
	if err != nil {
		log.Fatal(err)
	}
	defer doc.Close()
	doc.Edit(client.Insert(doc.Len(), "Ann, Bob"))
	if err := doc.Synced(ctx); err != nil {
		log.Fatal(err)
	}
	resp, err := http.Get(web.URL + "/collab/api/docs/minutes-42/text")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(strings.TrimSpace(string(body)))
	// Output:
	// {"id":"minutes-42","rev":1,"text":"Present: Ann, Bob","type":"plain"}
}

// Tandem next to an Echo application's own routes, behind the
// application's login: its session cookie says who the user is
// (Authenticate), its data says what they may do (Authorize).
func Example_echo() {
	ctx := context.Background()
	sessions := map[string]string{"cookie-of-ann": "ann"} // the application's own sessions
	srv, err := tandem.New(ctx, tandem.Config{
		Storage: tandem.Memory{},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Hooks: tandem.Hooks{
			Authenticate: func(r *http.Request) (*tandem.Identity, error) {
				c, err := r.Cookie("session")
				if err != nil || sessions[c.Value] == "" {
					return nil, nil // not signed in: refused (401)
				}
				return &tandem.Identity{User: sessions[c.Value], Name: "Ann"}, nil
			},
			Authorize: func(ctx context.Context, who tandem.Identity, doc string) (tandem.Role, error) {
				if strings.HasPrefix(doc, who.User+"-") {
					return tandem.RoleWrite, nil
				}
				return tandem.RoleNone, nil
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)

	e := echo.New()
	e.GET("/", func(c echo.Context) error { return c.String(http.StatusOK, "home") })
	collab := e.Group("/collab")
	collab.Any("/*", echo.WrapHandler(http.StripPrefix("/collab", srv)))
	web := httptest.NewServer(e)
	defer web.Close()

	srv.CreateDocument(ctx, tandem.NewDocument{ID: "ann-todo", Content: "milk"})
	srv.CreateDocument(ctx, tandem.NewDocument{ID: "bob-todo", Content: "eggs"})
	get := func(path, cookie string) {
		req, _ := http.NewRequest("GET", web.URL+path, nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "session", Value: cookie})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(path, resp.StatusCode)
	}
	get("/collab/api/docs/ann-todo/text", "")
	get("/collab/api/docs/ann-todo/text", "cookie-of-ann")
	get("/collab/api/docs/bob-todo/text", "cookie-of-ann")
	// Output:
	// /collab/api/docs/ann-todo/text 401
	// /collab/api/docs/ann-todo/text 200
	// /collab/api/docs/bob-todo/text 403
}

// Reacting to commits: OnChange gets every change after it is durable,
// in order, on a goroutine of its own (here it would feed a search index).
func ExampleHooks_onChange() {
	ctx := context.Background()
	seen := make(chan tandem.Event, 10)
	srv, err := tandem.New(ctx, tandem.Config{
		Storage: tandem.Memory{},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Hooks: tandem.Hooks{
			OnChange: func(ctx context.Context, e tandem.Event) error {
				seen <- e // an error here would retry the same event
				return nil
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	web := httptest.NewServer(srv)
	defer web.Close()

	srv.CreateDocument(ctx, tandem.NewDocument{ID: "readme", Title: "README"})
	doc, err := client.Dial(ctx, web.URL, "readme", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer doc.Close()
	doc.Edit(client.Insert(0, "# Tandem"))
	doc.Synced(ctx)
	srv.RenameDocument(ctx, "readme", "Read me")

	for range 3 {
		e := <-seen
		fmt.Printf("%s %s rev %d", e.Kind, e.Doc, e.Rev)
		for _, op := range e.Ops {
			fmt.Printf(" op %s", op.Op)
		}
		if e.Title != "" {
			fmt.Printf(" title %q", e.Title)
		}
		fmt.Println()
	}
	// Output:
	// create readme rev 0 title "README"
	// commit readme rev 1 op ["# Tandem"]
	// rename readme rev 0 title "Read me"
}

// Following the change feed from a cursor the application keeps.
func ExampleServer_Follow() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := tandem.New(ctx, tandem.Config{Storage: tandem.Memory{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	srv.CreateDocument(ctx, tandem.NewDocument{ID: "a"})
	srv.CreateDocument(ctx, tandem.NewDocument{ID: "b"})

	var cursor uint64 // 0: everything retained; the application stores it
	for e, err := range srv.Follow(ctx, cursor) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Kind, e.Doc)
		cursor = e.Cursor
		if e.Doc == "b" {
			break
		}
	}
	// Output:
	// create a
	// create b
}
