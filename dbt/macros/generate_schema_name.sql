{#- Custom schemas by their own name (`marts`, `staging`), not dbt's default `main_marts`. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
