//! Cross-thread frees go to the block's pool (`Pool::thread_free`); the
//! thread whose push makes that list non-empty also pushes the pool on the
//! heap's `remote` list. The owner takes the whole list with one swap when
//! a class queue runs dry, and moves each pool's blocks to the pool's
//! free list in one splice.

use super::queue;
use super::registry::reclaim;
use super::*;

impl Heap {
    /// Registers `pool`, whose `thread_free` list a remote free just made
    /// non-empty, on this heap's remote list. Any thread.
    pub fn push_remote_pool(&self, pool: &Pool) {
        let p = pool as *const Pool as *mut Pool;
        let mut head = self.remote.load(Relaxed);
        loop {
            pool.remote_next.store(head, Relaxed);
            match self.remote.compare_exchange_weak(head, p, Release, Relaxed) {
                Ok(_) => break,
                Err(cur) => head = cur,
            }
        }
    }

    /// After a remote free into this heap: a heap whose thread has exited
    /// is drained by the freeing thread, if the registry lock is free.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    pub fn after_remote_free(&self) {
        if self.state.load(Relaxed) == ABANDONED {
            reclaim(self);
        }
    }

    /// As above, with the state's load folded into the compare (LLVM
    /// loads an atomic into a register first).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub fn after_remote_free(&self) {
        // A jump past the call, so that the common case is one jump to the
        // caller's `ret`, not two.
        // SAFETY: reads the heap's state byte, which any thread may read
        // (`reclaim` reads it again under the registry lock).
        unsafe {
            core::arch::asm!(
                "cmp byte ptr [{h} + {state}], {abandoned}",
                "jne {done}",
                h = in(reg) self,
                state = const core::mem::offset_of!(Heap, state),
                abandoned = const ABANDONED,
                done = label { return },
                options(nostack, readonly),
            );
        }
        reclaim(self);
    }

    /// Takes back every block other threads freed into this heap. True if
    /// there was any.
    ///
    /// # Safety
    /// Called by the heap's owner (the thread whose TLS slot names it), or
    /// by the thread holding the registry lock while the heap is abandoned.
    pub unsafe fn drain_remote(&self) -> bool {
        let mut p = self.remote.swap(ptr::null_mut(), Acquire);
        if p.is_null() {
            return false;
        }
        while !p.is_null() {
            // SAFETY: pools on the remote list are live pools of ours: each
            // holds at least one block on its `thread_free` list.
            let pool = unsafe { &*p };
            // Read the link before the take clears `QUEUED`: from then on
            // another thread may register the pool again.
            p = pool.remote_next.load(Relaxed);
            // SAFETY: a pool of this heap, drained by its owner (contract),
            // and off the remote list (taken whole above).
            unsafe { pool.take_thread_free_dequeued() };
            if pool.is_empty() || !pool.in_queue() {
                queue::pool_gained(pool, self);
            }
        }
        true
    }

    /// At thread exit: the empty pools kept as queue heads go back to their
    /// arenas (an abandoned heap keeps none); their pages, like the other
    /// free units', wait for the purge delay, so that a thread that adopts
    /// the heap soon finds them resident.
    pub(super) fn release_empty_heads(&self) {
        for class in 0..NUM_CLASSES {
            if let Some(pool) = self.head(class) {
                if pool.is_empty() && !pool.is_remote_queued() {
                    self.release_pool(pool);
                }
            }
        }
    }
}
