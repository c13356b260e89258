package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tandemdocs/tandem/internal/web"
)

// tokenCmd mints a token: `tandem token --user ann --doc '*' --role write`.
func tokenCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "the server's auth secret (TANDEM_AUTH_SECRET; with a list, the first one signs)")
	user := fs.String("user", "", "user id (the token's subject): required")
	name := fs.String("name", "", "display name others see (default: the user id)")
	color := fs.String("color", "", "colour others see, like #e11d48")
	var docs multiFlag
	fs.Var(&docs, "doc", "a document id, an id prefix ending in * (a tenant), or * for every document; repeat for several (default *)")
	role := fs.String("role", "write", "read, write or admin: the role on every --doc")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	link := fs.String("link", "", "the server's URL (http://localhost:8080): print a link that opens the demo with the token (in the #fragment, which no server sees) instead of the bare token")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tandem token --user ID [--doc ID|PREFIX*|*]... [--role read|write|admin] [--ttl 24h]\n\nPrints a token signed with the server's secret.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		*secret, _, _ = strings.Cut(os.Getenv(envName("auth-secret")), ",")
	}
	switch {
	case *secret == "":
		return errors.New("token: give --secret or set TANDEM_AUTH_SECRET")
	case *user == "":
		return errors.New("token: give --user")
	case *ttl <= 0:
		return errors.New("token: --ttl must be positive")
	}
	if _, err := web.ParseRole(*role); err != nil {
		return fmt.Errorf("token: --role: %w", err)
	}
	if len(docs) == 0 {
		docs = multiFlag{"*"}
	}
	c := web.Claims{Name: *name, Color: *color}
	if c.Name == "" {
		c.Name = *user
	}
	now := time.Now()
	c.Subject, c.IssuedAt, c.ExpiresAt = *user, jwt.NewNumericDate(now), jwt.NewNumericDate(now.Add(*ttl))
	for _, d := range docs {
		c.Docs = append(c.Docs, web.Grant{ID: d, Role: *role})
	}
	tok, err := web.Mint(*secret, c)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if *link == "" {
		fmt.Fprintln(stdout, tok)
		return nil
	}
	u, err := url.Parse(*link)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("token: --link %q: want the server's http(s) URL", *link)
	}
	// One document: its editor; several, a prefix or *: the list.
	u.Path = strings.TrimSuffix(u.Path, "/") + "/"
	if len(docs) == 1 && !strings.HasSuffix(docs[0], "*") {
		u.Path += "d/" + docs[0]
	}
	u.RawQuery, u.Fragment = "", "token="+tok
	fmt.Fprintln(stdout, u.String())
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
