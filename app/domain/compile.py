"""Validation and compilation of workflow definitions (to be completed by the domain work).

Public surface, used by the orchestrator and API:
- `parse_definition(data) -> WorkflowDefinition` (raises DefinitionInvalid with paths)
- `compile_workflow(defn) -> Workflow` (raises DefinitionInvalid with paths)
- `definition_digest(defn) -> str`
- `validate_input(workflow, value)` (raises InputInvalid)
"""
