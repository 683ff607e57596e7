package pg

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestIdentitySame(t *testing.T) {
	a := Identity{SystemID: "7", Database: "d", OID: 5, Host: "h", Port: 5432}
	for _, c := range []struct {
		b    Identity
		same bool
	}{
		{Identity{SystemID: "7", Database: "d", OID: 5, Host: "other", Port: 1}, true}, // another name of one server
		{Identity{SystemID: "8", Database: "d", OID: 5, Host: "h", Port: 5432}, false}, // another cluster
		{Identity{SystemID: "7", Database: "d", OID: 6, Host: "h", Port: 5432}, false}, // dropped and created again
		{Identity{Database: "d", OID: 5, Host: "h", Port: 5432}, true},
		{Identity{Database: "d", OID: 5, Host: "h", Port: 5433}, false},
	} {
		if got := a.Same(c.b); got != c.same {
			t.Errorf("%v.Same(%v) = %v", a, c.b, got)
		}
	}
	if a.Key() != "7/5" || (Identity{Database: "d", Host: "h", Port: 1}).Key() != "h:1/d" {
		t.Errorf("keys %q", a.Key())
	}
}

func TestReadIdentity(t *testing.T) {
	dsn := os.Getenv("FHIRBULK_TEST_DATABASE_URL")
	if dsn == "" {
		t.Skip("FHIRBULK_TEST_DATABASE_URL unset")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	id, err := ReadIdentity(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if id.SystemID == "" || id.OID == 0 || id.Database == "" || id.Port == 0 {
		t.Fatalf("identity %+v", id)
	}
	again, err := ReadIdentity(ctx, conn)
	if err != nil || !again.Same(id) || again.Key() != id.Key() {
		t.Fatalf("identity %+v then %+v (%v)", id, again, err)
	}
}
