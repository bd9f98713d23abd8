package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/ledger"
)

// The export queries carry MONGO_READ_PREFERENCE (default secondaryPreferred) to the server;
// the ledger's commands stay on the primary.
//
// What can be seen on the wire depends on the topology the driver sees (mongo-driver v2,
// x/mongo/driver/operation.go, createReadPref): to a standalone server it never sends
// $readPreference, whatever the mode, and server selection on a single server ignores it;
// FerretDB answers hello as a standalone, so against it directly no read preference can be
// observed. (directConnection=true does not change that for a standalone; against a
// replica-set member it makes the topology Single, where a primary read preference is sent as
// primaryPreferred.) So the worker talks to FerretDB through rsFront, a proxy that adds a
// replica set name and host list to FerretDB's hello replies and changes nothing else: the
// driver then sees the primary of a one-member replica set (MONGO_URI with replicaSet=), and
// sends the read preference in every read command as it does to a real replica set (OP_MSG:
// never for mode primary, which is the default). The proxy records the commands the server
// receives. FerretDB ignores $readPreference.
func TestExportQueriesCarryTheReadPreference(t *testing.T) {
	t.Parallel()
	b := setup(t, 30)
	front := newRSFront(t, b.st.Env["MONGO_URI"], "rs0")
	campaign := fixtures.Campaigns[0]
	for _, tc := range []struct {
		name, env, mode string
	}{
		{"default", "", "secondaryPreferred"},
		{"nearest", "nearest", "nearest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"MONGO_URI": front.URI()}
			if tc.env != "" {
				env["MONGO_READ_PREFERENCE"] = tc.env
			}
			front.reset()
			p := stacktest.Start(t, b.workerEnv(t, env), "worker")
			id := "readpref-" + tc.name + "-" + stacktest.RandomID()
			b.send(t, regJob(t, id, campaign))
			b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), 60*time.Second)
			b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
			// A duplicate delivery makes the ledger read the entry (its claim finds it finished).
			b.send(t, regJob(t, id, campaign))
			eventually(t, 30*time.Second, "a read of the ledger", func() bool {
				for _, c := range front.commands(b.db.Name()) {
					if c.Collection == ledger.Collection && c.Name == "find" {
						return true
					}
				}
				return false
			})
			p.Stop(10 * time.Second)

			var exportReads, ledgerReads int
			seen := map[string]int{}
			cmds := front.commands(b.db.Name())
			for _, c := range cmds {
				seen[fmt.Sprintf("%s %s %q", c.Name, c.Collection, c.Mode)]++
				switch {
				case c.Collection == "registrations" && c.Name != "getMore":
					// The cursor, its end guard, the segment planning's count: every read of the
					// export. (A getMore goes to the cursor's server and carries none.)
					exportReads++
					if c.Mode != tc.mode {
						t.Errorf("%s on registrations carries read preference %q, want %q", c.Name, c.Mode, tc.mode)
					}
				case c.Collection == ledger.Collection:
					if c.Name == "find" || c.Name == "aggregate" {
						ledgerReads++
					}
					if c.Mode != "" && c.Mode != "primary" {
						t.Errorf("ledger %s carries read preference %q, want the primary", c.Name, c.Mode)
					}
				}
			}
			t.Logf("commands on the wire: %v", seen)
			if exportReads == 0 || ledgerReads == 0 {
				t.Fatalf("the proxy saw %d export reads and %d ledger reads; want both (commands: %v)", exportReads, ledgerReads, cmds)
			}
		})
	}
}

// rsFront is a TCP proxy in front of a standalone MongoDB server (FerretDB) whose hello replies
// it amends with setName and hosts (itself), so that a driver sees a replica set primary. It
// records the commands the clients send.
type rsFront struct {
	t        *testing.T
	ln       net.Listener
	upstream string
	setName  string
	mu       sync.Mutex
	cmds     []wireCommand
}

// wireCommand is one command as the server received it.
type wireCommand struct {
	Name, DB, Collection string
	// Mode is the mode of its $readPreference, empty without one.
	Mode string
}

func (c wireCommand) String() string {
	return fmt.Sprintf("%s %s.%s mode=%q", c.Name, c.DB, c.Collection, c.Mode)
}

func newRSFront(t *testing.T, mongoURI, setName string) *rsFront {
	t.Helper()
	u, err := url.Parse(mongoURI)
	if err != nil {
		t.Fatalf("parse MONGO_URI: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &rsFront{t: t, ln: ln, upstream: u.Host, setName: setName}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			wg.Go(func() { f.serve(c, &conns) })
		}
	})
	return f
}

// URI is a connection string naming the proxy as the replica set's only host.
func (f *rsFront) URI() string {
	return fmt.Sprintf("mongodb://%s/?replicaSet=%s", f.ln.Addr(), f.setName)
}

func (f *rsFront) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = nil
}

// commands returns the commands recorded on database db.
func (f *rsFront) commands(db string) []wireCommand {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []wireCommand
	for _, c := range f.cmds {
		if c.DB == db {
			out = append(out, c)
		}
	}
	return out
}

func (f *rsFront) serve(client net.Conn, conns *sync.Map) {
	defer client.Close()
	server, err := net.Dial("tcp", f.upstream)
	if err != nil {
		f.t.Errorf("rsFront: dial %s: %v", f.upstream, err)
		return
	}
	conns.Store(server, true)
	defer server.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		for {
			msg, err := readWireMessage(client)
			if err != nil {
				return
			}
			f.record(msg)
			if _, err := server.Write(msg); err != nil {
				return
			}
		}
	}()
	for {
		msg, err := readWireMessage(server)
		if err != nil {
			break
		}
		if _, err := client.Write(f.amendHello(msg)); err != nil {
			break
		}
	}
	client.Close()
	<-done
}

const (
	opReply = 1
	opMsg   = 2013
)

func readWireMessage(r io.Reader) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(head[:]))
	if n < 16 || n > 64<<20 {
		return nil, fmt.Errorf("wire message of %d bytes", n)
	}
	msg := make([]byte, n)
	copy(msg, head[:])
	_, err := io.ReadFull(r, msg[4:])
	return msg, err
}

// body returns the offset of a reply's or command's (first) document: OP_MSG's section of
// kind 0, OP_REPLY's first document; -1 for anything else.
func body(msg []byte) int {
	switch binary.LittleEndian.Uint32(msg[12:]) {
	case opMsg:
		if len(msg) > 21 && msg[20] == 0 {
			return 21
		}
	case opReply:
		if len(msg) > 36 && binary.LittleEndian.Uint32(msg[32:]) > 0 {
			return 36
		}
	}
	return -1
}

func docAt(msg []byte, off int) (bson.Raw, error) {
	if off < 0 || off+4 > len(msg) {
		return nil, errors.New("no document")
	}
	n := int(binary.LittleEndian.Uint32(msg[off:]))
	if n < 5 || off+n > len(msg) {
		return nil, errors.New("bad document length")
	}
	doc := bson.Raw(msg[off : off+n])
	return doc, doc.Validate()
}

// record notes an OP_MSG command (the handshake's legacy OP_QUERY isMaster is no export's).
func (f *rsFront) record(msg []byte) {
	if binary.LittleEndian.Uint32(msg[12:]) != opMsg {
		return
	}
	doc, err := docAt(msg, body(msg))
	if err != nil {
		return
	}
	elems, err := doc.Elements()
	if err != nil || len(elems) == 0 {
		return
	}
	c := wireCommand{Name: elems[0].Key()}
	if s, ok := elems[0].Value().StringValueOK(); ok {
		c.Collection = s
	}
	if s, ok := doc.Lookup("collection").StringValueOK(); ok && c.Name == "getMore" {
		c.Collection = s
	}
	c.DB, _ = doc.Lookup("$db").StringValueOK()
	if rp, ok := doc.Lookup("$readPreference").DocumentOK(); ok {
		c.Mode, _ = rp.Lookup("mode").StringValueOK()
		if c.Mode == "" {
			c.Mode = "(no mode) " + rp.String()
		}
	}
	f.mu.Lock()
	f.cmds = append(f.cmds, c)
	f.mu.Unlock()
}

// amendHello adds setName and hosts to a hello (or isMaster) reply; other messages pass as
// they are.
func (f *rsFront) amendHello(msg []byte) []byte {
	off := body(msg)
	doc, err := docAt(msg, off)
	if err != nil || doc.Lookup("maxWireVersion").Type == 0 || doc.Lookup("setName").Type != 0 {
		return msg
	}
	if binary.LittleEndian.Uint32(msg[12:]) == opMsg && binary.LittleEndian.Uint32(msg[16:])&1 != 0 {
		f.t.Errorf("rsFront: a hello reply with a checksum; the proxy cannot amend it")
		return msg
	}
	var d bson.D
	if err := bson.Unmarshal(doc, &d); err != nil {
		f.t.Errorf("rsFront: decode hello reply: %v", err)
		return msg
	}
	d = append(d, bson.E{Key: "setName", Value: f.setName}, bson.E{Key: "hosts", Value: bson.A{f.ln.Addr().String()}})
	amended, err := bson.Marshal(d)
	if err != nil {
		f.t.Errorf("rsFront: encode hello reply: %v", err)
		return msg
	}
	out := append(append(append([]byte{}, msg[:off]...), amended...), msg[off+len(doc):]...)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out
}
