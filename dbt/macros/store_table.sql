{#- A table of the poster store named directly, for the one table read without source(). -#}
{% macro store_table(name) -%}
    {{ api.Relation.create(schema="main", identifier=name) }}
{%- endmacro %}
