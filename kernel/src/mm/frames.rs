//! Frame allocator (todo).
