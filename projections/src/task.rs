//! A DTS task's state: which package it draws from, whether it may run, what it has moved.

use crate::events::StopReason;
use crate::ids::{Bytes, InstanceId, TaskId};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Running,
    Stopped,
    Destroyed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Stopped => "stopped",
            TaskState::Destroyed => "destroyed",
        }
    }

    pub fn parse(value: &str) -> Option<TaskState> {
        [TaskState::Running, TaskState::Stopped, TaskState::Destroyed]
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub task_id: TaskId,
    /// The package the task draws from now.
    pub instance_id: InstanceId,
    pub state: TaskState,
    /// Set while `state` is `Stopped`.
    pub stop_reason: Option<StopReason>,
    /// Every byte the task reported, over all the packages it was bound to.
    pub bytes_consumed: Bytes,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub destroyed_at: Option<DateTime<Utc>>,
}

impl Task {
    pub(crate) fn created(task_id: TaskId, instance_id: InstanceId, at: DateTime<Utc>) -> Task {
        Task {
            task_id,
            instance_id,
            state: TaskState::Running,
            stop_reason: None,
            bytes_consumed: Bytes::ZERO,
            created_at: at,
            updated_at: at,
            destroyed_at: None,
        }
    }
}
