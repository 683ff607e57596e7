package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// fakeServer accepts connections on 127.0.0.1 and hands each to serve.
func fakeServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return l.Addr().String()
}

// A wrong password: the server's answer is the message, not the refused
// TLS handshake of sslmode=prefer's first try.
func TestConnectSaysTheServersAnswer(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn) {
		be := pgproto3.NewBackend(c, c)
		for {
			msg, err := be.ReceiveStartupMessage()
			if err != nil {
				return
			}
			switch msg.(type) {
			case *pgproto3.SSLRequest:
				c.Write([]byte("N"))
			case *pgproto3.StartupMessage:
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "u"`})
				be.Flush()
				return
			}
		}
	})
	_, err := Connect(context.Background(), "postgres://u:s3cr3tpw@"+addr+"/d?sslmode=prefer")
	want := fmt.Sprintf(`cannot connect to PostgreSQL database "d" as user "u" at %s: password authentication failed for user "u"`, strings.Replace(addr, ":", ":", 1))
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	// The cause is kept: a wrong password is recognisable by its SQLSTATE.
	var ce *ConnectError
	var pgErr *pgconn.PgError
	if !errors.As(err, &ce) || !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("err = %#v: want a *ConnectError holding the server's 28P01", err)
	}
}

// A port nobody listens on: the reason is the network's, found by its type.
func TestConnectRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Connect(context.Background(), "postgres://u@"+addr+"/d?sslmode=prefer")
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Reason != "connection refused" || !errors.Is(err, syscall.ECONNREFUSED) || ce.Unconfigured {
		t.Errorf("err = %v (%#v)", err, ce)
	}
}

// A server that never answers: given up after connect_timeout, said plainly.
func TestConnectTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	addr := fakeServer(t, func(c net.Conn) { <-release })
	_, err := Connect(context.Background(), "postgres://u@"+addr+"/d?connect_timeout=1&sslmode=disable")
	if err == nil || !strings.HasSuffix(err.Error(), ": no answer within 1s (connect_timeout)") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseDSN(t *testing.T) {
	for dsn, want := range map[string]string{
		"mysql://u:pw@h/db":  "a mysql:// URL",
		"postgres://u@[bad/": "bad connection string",
		"host=h port=eighty": "bad connection string",
	} {
		_, err := ParseDSN(dsn)
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDSN(%q) = %v, want a ConfigError with %q", dsn, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("ParseDSN(%q) shows the password: %v", dsn, err)
		}
	}
	for _, ok := range []string{"", "postgres://u@h/db", "POSTGRESQL://u@h/db", "host=h dbname=d"} {
		if _, err := ParseDSN(ok); err != nil {
			t.Errorf("ParseDSN(%q): %v", ok, err)
		}
	}
}

func TestRedact(t *testing.T) {
	if got := redact(`user "a" at a host`, "a"); got != `user "a" at a host` {
		t.Errorf("a short password mangled the message: %s", got)
	}
	if got := redact(`echo s3cr3t-pw back`, "s3cr3t-pw"); got != `echo xxxxx back` {
		t.Errorf("redact = %s", got)
	}
}

// A port where a web server listens: pgx said "expected at most
// 1073741822, but got 1414811691" (the bytes "TTP/" read as a length).
func TestConnectToHTTPServer(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn) {
		c.Read(make([]byte, 100))
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
	})
	for _, mode := range []string{"prefer", "disable"} {
		_, err := Connect(context.Background(), "postgres://u@"+addr+"/d?sslmode="+mode)
		if err == nil || !strings.HasSuffix(err.Error(), ": the server there answers in HTTP, not PostgreSQL's protocol (a web server's port? PostgreSQL's is usually 5432)") {
			t.Errorf("sslmode=%s: err = %v", mode, err)
		}
	}
}

// A bare word is most often a database name given as the connection string.
func TestParseDSNBareWord(t *testing.T) {
	_, err := ParseDSN("nc_a")
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), `bad connection string "nc_a": not a URL (postgres://HOST:PORT/DATABASE) nor keyword=value pairs`) ||
		!strings.HasSuffix(err.Error(), "give dbname=nc_a") {
		t.Fatalf("err = %v", err)
	}
	if _, err := ParseDSN("dbname=nc_a"); err != nil {
		t.Fatal(err)
	}
}
