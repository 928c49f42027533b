//! A destination in memory, for unit tests of what is built on destinations (the store, its
//! sweep) without peers: objects in a map, uploads visible only on commit, a log of every change
//! in order, and a failure on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{listed, DestError, Destination, Entry, ObjectReader, Upload};

/// Objects by name, and what was done to them.
#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Vec<u8>>,
    log: Vec<String>,
    fail: Option<String>,
}

/// A destination in memory; clones share the objects.
#[derive(Clone, Default)]
pub struct Memory(Arc<Mutex<Inner>>);

impl Memory {
    /// A destination holding `objects`.
    pub fn with(objects: &[(&str, &str)]) -> Memory {
        let m = Memory::default();
        for (name, data) in objects {
            m.inner()
                .objects
                .insert(name.to_string(), data.as_bytes().to_vec());
        }
        m
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap()
    }

    /// The names of the objects, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner().objects.keys().cloned().collect()
    }

    /// What was done, in order: `put NAME` (committed), `delete NAME`.
    pub fn log(&self) -> Vec<String> {
        self.inner().log.clone()
    }

    /// Makes every later commit of object `name` fail.
    pub fn fail_commit(&self, name: &str) {
        self.inner().fail = Some(name.to_string());
    }

    fn failure(&self, name: &str) -> DestError {
        DestError::Unusable {
            dest: self.describe(),
            message: format!("cannot write {name}: the test says so"),
        }
    }
}

#[async_trait]
impl Destination for Memory {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn prepare(&self) -> Result<(), DestError> {
        Ok(())
    }

    async fn put(&self, name: &str) -> Result<Box<dyn Upload>, DestError> {
        super::check_name(self, name)?;
        Ok(Box::new(MemoryUpload {
            dest: self.clone(),
            name: name.to_string(),
            data: Vec::new(),
        }))
    }

    async fn get(&self, name: &str) -> Result<ObjectReader, DestError> {
        match self.inner().objects.get(name) {
            Some(data) => Ok(Box::new(std::io::Cursor::new(data.clone()))),
            None => Err(DestError::NotFound {
                dest: self.describe(),
                name: name.to_string(),
            }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, DestError> {
        super::check_prefix(self, prefix)?;
        Ok(self
            .inner()
            .objects
            .iter()
            .filter(|(name, _)| listed(prefix, name))
            .map(|(name, data)| Entry {
                name: name.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    async fn delete(&self, name: &str) -> Result<(), DestError> {
        super::check_name(self, name)?;
        let mut inner = self.inner();
        inner.objects.remove(name);
        inner.log.push(format!("delete {name}"));
        Ok(())
    }
}

/// An object being written to [`Memory`].
struct MemoryUpload {
    dest: Memory,
    name: String,
    data: Vec<u8>,
}

#[async_trait]
impl Upload for MemoryUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), DestError> {
        self.data.extend_from_slice(&chunk);
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<u64, DestError> {
        let mut inner = self.dest.inner();
        if inner.fail.as_deref() == Some(self.name.as_str()) {
            drop(inner);
            return Err(self.dest.failure(&self.name));
        }
        inner.log.push(format!("put {}", self.name));
        let size = self.data.len() as u64;
        inner.objects.insert(self.name, self.data);
        Ok(size)
    }

    async fn abort(self: Box<Self>) {}
}
