//! Each forwarded action's parameters as a type of its own. An action
//! binary's handler receives its own type and nothing else, so it has no
//! arm for the other actions: the worker turns the validated [`Action`]
//! into it once, and refuses a request for another action before that.

use crate::{Action, ActionName, Governor, Signal};

/// The typed parameters of one forwarded action.
pub trait Params: Sized + Send + Sync + 'static {
    /// The action these are the parameters of.
    const ACTION: ActionName;
    /// These parameters, when `action` is [`Self::ACTION`]; else `action`
    /// back.
    fn from_action(action: Action) -> Result<Self, Action>;
}

/// One struct per action, with the fields of its [`Action`] variant, and its
/// [`Params`] impl: written once here rather than eight times by hand.
macro_rules! params {
    ($($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* })*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name { $(pub $field: $ty),* }

        impl Params for $name {
            const ACTION: ActionName = ActionName::$name;
            fn from_action(action: Action) -> Result<Self, Action> {
                match action {
                    Action::$name { $($field),* } => Ok($name { $($field),* }),
                    other => Err(other),
                }
            }
        }
    )*};
}

params! {
    /// The unit, validated and with its type suffix.
    RestartService { unit: String }
    SetCpuGovernor { governor: Governor }
    ClearSystemCache {}
    AdjustSwappiness { value: u8 }
    KillProcess { pid: i32, signal: Signal }
    RestartNetwork {}
    CleanNixStore {}
    RollbackGeneration {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_action_converts() {
        let a = Action::KillProcess {
            pid: 42,
            signal: Signal::Hup,
        };
        assert_eq!(
            KillProcess::from_action(a.clone()),
            Ok(KillProcess {
                pid: 42,
                signal: Signal::Hup
            })
        );
        assert_eq!(AdjustSwappiness::from_action(a.clone()), Err(a));
        assert_eq!(
            ClearSystemCache::from_action(Action::ClearSystemCache),
            Ok(ClearSystemCache {})
        );
        assert!(CleanNixStore::from_action(Action::RollbackGeneration).is_err());
    }

    /// A params type for every forwarded action, each naming its own.
    #[test]
    fn every_forwarded_action_has_its_type() {
        let typed = [
            RestartService::ACTION,
            SetCpuGovernor::ACTION,
            ClearSystemCache::ACTION,
            AdjustSwappiness::ACTION,
            KillProcess::ACTION,
            RestartNetwork::ACTION,
            CleanNixStore::ACTION,
            RollbackGeneration::ACTION,
        ];
        let forwarded: Vec<ActionName> = crate::ALL_ACTIONS
            .into_iter()
            .filter(|a| a.is_forwarded())
            .collect();
        assert_eq!(typed.to_vec(), forwarded);
    }
}
