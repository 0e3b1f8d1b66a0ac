package store

import (
	"container/list"
	"sync"
)

// DefaultCredentialCacheSize is how many cluster credentials a DB remembers unless
// WithCredentialCache says otherwise.
const DefaultCredentialCacheSize = 1 << 16

// WithCredentialCache sets how many cluster credentials ClusterForCredential
// remembers, so that authenticating a request does not read SQLite; zero or less
// remembers none.
func WithCredentialCache(entries int) Option {
	return func(db *DB) { db.creds = newCredentialCache(entries) }
}

// credentialCache remembers which cluster each recently used credential hash
// belongs to, at most max of them, dropping the least recently used first. It
// never holds a credential the database no longer has:
//
//   - every change of a cluster's credential (rotation, deletion) drops that
//     cluster's entry once it is committed, and moves gen on;
//   - a lookup takes gen before it reads the database, and its answer is
//     added only if gen has not moved since: a reader that saw the old
//     credential just before a change committed cannot add it back after.
//
// Unknown hashes are not remembered: they are refused, and cost a read.
type credentialCache struct {
	mu        sync.Mutex
	max       int
	gen       uint64
	entries   map[[32]byte]*list.Element // of *credentialEntry
	byCluster map[string]*list.Element
	lru       list.List // most recently used first
}

type credentialEntry struct {
	hash    [32]byte
	cluster string
}

func newCredentialCache(max int) *credentialCache {
	return &credentialCache{max: max, entries: map[[32]byte]*list.Element{}, byCluster: map[string]*list.Element{}}
}

// get returns the cluster of credential hash h, with ok false when it is not
// cached; gen is what add needs after a database read.
func (c *credentialCache) get(h [32]byte) (cluster string, ok bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[h]
	if !ok {
		return "", false, c.gen
	}
	c.lru.MoveToFront(e)
	return e.Value.(*credentialEntry).cluster, true, c.gen
}

// add remembers that h is cluster's credential, as read from the database
// after get returned gen. It does nothing when a credential changed since.
func (c *credentialCache) add(h [32]byte, cluster string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max <= 0 || gen != c.gen {
		return
	}
	if _, ok := c.entries[h]; ok {
		return
	}
	if old, ok := c.byCluster[cluster]; ok {
		c.remove(old) // a cluster has one credential at a time
	}
	for c.lru.Len() >= c.max {
		c.remove(c.lru.Back())
	}
	e := c.lru.PushFront(&credentialEntry{hash: h, cluster: cluster})
	c.entries[h] = e
	c.byCluster[cluster] = e
}

// invalidate forgets the credentials of clusters, whose credentials changed,
// and keeps lookups that read the database before the change from adding them.
func (c *credentialCache) invalidate(clusters []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, name := range clusters {
		if e, ok := c.byCluster[name]; ok {
			c.remove(e)
		}
	}
}

func (c *credentialCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *credentialCache) remove(e *list.Element) {
	ce := c.lru.Remove(e).(*credentialEntry)
	delete(c.entries, ce.hash)
	delete(c.byCluster, ce.cluster)
}
