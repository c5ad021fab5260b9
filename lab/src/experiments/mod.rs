//! Experiments: a configuration plus a seed in, a trained model and a results file out.
pub mod finished;
pub mod g2p;
pub mod nmt;
pub mod vqa;
pub mod vqa_v2;

pub use crate::train::runner::RunOptions;

pub use crate::config::check_objective;

#[cfg(test)]
mod tests {
    use crate::config::load_with_preset;

    /// The validation accepts every row config shipped in configs/ under every preset.
    #[test]
    fn every_shipped_config_is_valid_under_every_preset() {
        let root = crate::repo_root().join("configs");
        let mut checked = 0;
        for task in ["nmt", "wmt17", "vqa", "g2p"] {
            let dir = root.join(task);
            let presets: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("presets.toml")).unwrap()).unwrap();
            for e in std::fs::read_dir(&dir).unwrap() {
                let path = e.unwrap().path();
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                if !file.ends_with(".toml") || file == "presets.toml" || file == "paper-numbers.toml" {
                    continue;
                }
                for preset in presets.as_table().unwrap().keys() {
                    let r = match task {
                        "nmt" | "wmt17" => load_with_preset::<super::nmt::NmtConfig>(&path, preset).and_then(|(c, _)| c.validate()),
                        "vqa" => load_with_preset::<super::vqa::VqaConfig>(&path, preset).and_then(|(c, _)| c.validate()),
                        _ => load_with_preset::<super::g2p::G2pConfig>(&path, preset).and_then(|(c, _)| c.validate()),
                    };
                    r.unwrap_or_else(|e| panic!("{} under preset {preset}: {e:#}", path.display()));
                    checked += 1;
                }
            }
        }
        assert!(checked > 40, "{checked}");
    }
}
