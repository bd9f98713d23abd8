package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
)

// WriteSerializer is a TCP proxy in front of FerretDB that lets one write command through at
// a time (insert, update, delete, findAndModify and the like), across every connection.
//
// Why: FerretDB 1.24 with SQLite runs an update or findAndModify as a query, then a write of
// the whole document, with nothing between them. Concurrent writes to one document lose each
// other's changes (a $set of field a is undone by a concurrent $set of field b), and a
// conditional update is no compare-and-set (of ten concurrent findOneAndUpdate with the same
// filter, up to ten "win"). MongoDB applies each write to a document atomically, and the
// ledger's claim, fencing token and handover record rely on it. Without this proxy a campaign
// reports what FerretDB did, not what the service does (it was seen: a lease renewal undid a
// handover's message id, and the export was left with no message). Reads go through
// unserialized, so long scans do not hold the writes up.
type WriteSerializer struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex // held from a write command's request to its reply
	wg       sync.WaitGroup
	closing  chan struct{}
	connsMu  sync.Mutex
	conns    map[net.Conn]bool
}

// NewWriteSerializer listens on a free loopback port and forwards to upstream.
func NewWriteSerializer(upstream string) (*WriteSerializer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &WriteSerializer{ln: ln, upstream: upstream, closing: make(chan struct{}), conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the address the serializer listens on.
func (s *WriteSerializer) Addr() string { return s.ln.Addr().String() }

// Close stops the serializer and closes its connections.
func (s *WriteSerializer) Close() {
	close(s.closing)
	s.ln.Close()
	s.connsMu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.connsMu.Unlock()
	s.wg.Wait()
}

func (s *WriteSerializer) track(c net.Conn, on bool) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if on {
		s.conns[c] = true
	} else {
		delete(s.conns, c)
	}
}

func (s *WriteSerializer) accept() {
	defer s.wg.Done()
	for {
		client, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(client)
		}()
	}
}

const (
	opMsg        = 2013
	opCompressed = 2012
)

// writeCommands are the commands that change documents.
var writeCommands = map[string]bool{
	"insert": true, "update": true, "delete": true, "findAndModify": true, "findandmodify": true,
}

// commandName is the first key of an OP_MSG's body section, or "".
func commandName(msg []byte) string {
	if len(msg) < 16+4+1+4+1 || int32(binary.LittleEndian.Uint32(msg[12:16])) != opMsg {
		return ""
	}
	body := msg[20:]
	if body[0] != 0 { // the body section comes first in what the drivers send
		return ""
	}
	doc := body[1:]
	if len(doc) < 6 {
		return ""
	}
	key := doc[5:] // after the length and the first element's type
	for i, b := range key {
		if b == 0 {
			return string(key[:i])
		}
	}
	return ""
}

func moreToCome(msg []byte) bool {
	return int32(binary.LittleEndian.Uint32(msg[12:16])) == opMsg && len(msg) >= 20 && binary.LittleEndian.Uint32(msg[16:20])&2 != 0
}

func readMsg(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if n < 16 || n > 64<<20 {
		return nil, errors.New("bad message length")
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[4:]); err != nil {
		return nil, err
	}
	return msg, nil
}

// serve relays one client connection. A write command takes the lock before it is forwarded;
// the lock is let go when the reply to it comes back (or the connection ends).
func (s *WriteSerializer) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", s.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	s.track(client, true)
	s.track(server, true)
	defer s.track(client, false)
	defer s.track(server, false)

	var (
		pmu     sync.Mutex
		pending int32 = -1 // the request id of the write holding the lock
	)
	unlockIf := func(responseTo int32) {
		pmu.Lock()
		defer pmu.Unlock()
		if pending != -1 && (responseTo == pending || responseTo == -2) {
			pending = -1
			s.mu.Unlock()
		}
	}
	defer unlockIf(-2)

	done := make(chan struct{})
	go func() { // server to client
		defer close(done)
		defer client.Close()
		for {
			msg, err := readMsg(server)
			if err != nil {
				return
			}
			if _, err := client.Write(msg); err != nil {
				return
			}
			unlockIf(int32(binary.LittleEndian.Uint32(msg[8:12])))
		}
	}()
	for {
		msg, err := readMsg(client)
		if err != nil {
			break
		}
		if writeCommands[commandName(msg)] && !moreToCome(msg) {
			s.mu.Lock()
			pmu.Lock()
			pending = int32(binary.LittleEndian.Uint32(msg[4:8]))
			pmu.Unlock()
		}
		if _, err := server.Write(msg); err != nil {
			break
		}
	}
	server.Close()
	<-done
}
