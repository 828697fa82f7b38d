//! Heap (todo).
